"""Physics: system (GPU) and model specs, the speed-of-light model, its fast evaluators and its calibration."""
