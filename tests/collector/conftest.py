"""Collector tests. Without a GPU the Triton kernels run through Triton's
interpreter (TRITON_INTERPRET=1 must be set before triton is imported), in
float32 since the interpreter mishandles bf16 dots; without triton those
tests skip and only the PyTorch reference paths are tested."""
import os

try:
    import torch

    _CUDA = torch.cuda.is_available()
except Exception:  # torch not installed: every torch test skips
    _CUDA = False

if not _CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
