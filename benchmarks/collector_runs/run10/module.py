"""Run 10: the whole MLA generation module (b x kv_len x H) with the decode_config of CONFIGS.json, 0.2 vs 0.1 decode.

    python module.py CONFIGS.json [batch kv_len heads]"""
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.decode_bench import module_rows  # noqa: E402
from collector.timing import Bencher  # noqa: E402

b, L, H = (int(x) for x in (sys.argv[2:5] or (64, 32768, 128)))
a = SimpleNamespace(write_config=Path(sys.argv[1]), heads=H, batch=b, kv_len=L, deadline=60)
rows = []
module_rows(a, Bencher(), rows, time.time())
