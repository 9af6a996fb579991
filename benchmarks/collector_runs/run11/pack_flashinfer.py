"""Trim the flashinfer-python wheel (101 MB, 715 MB unpacked) to what its MLA decode needs, with the
modules prebuilt here, into one tarball the device call carries (the call carries 64 MiB in all).

The device has no network and its call time is scarce, so the JIT modules are built on this machine
(nvcc 13.0, no GPU: ``FLASHINFER_CUDA_ARCH_LIST=9.0a``; the link needs ``-L/usr/local/cuda/lib64``,
see README) and shipped as FlashInfer AOT artifacts (``flashinfer/data/aot/<name>/<name>.so``, loaded
without ninja). Kept: every ``flashinfer`` Python file that ``import flashinfer`` and the MLA wrapper
load, plus all of ``mla/``, ``jit/``, ``trace/`` and the directories of loaded modules (lazy imports);
the ``csrc`` sources of the MLA modules; the headers the builds read (``ninja -t deps``), so a module
missing here can still be JIT-built there.

    python pack_flashinfer.py WHEEL_DIR SITE_DIR JIT_CACHE_DIR OUT.tgz
      WHEEL_DIR      the unpacked wheel (holds flashinfer/)
      SITE_DIR       a site dir where flashinfer (linked to WHEEL_DIR) and tvm_ffi import
      JIT_CACHE_DIR  $FLASHINFER_WORKSPACE_BASE/.cache/flashinfer/<ver>/<arch>/cached_ops
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import tarfile

PROBE = """
import sys, flashinfer, flashinfer.mla
import flashinfer.mla._batch_mla._backends.fa3_backend, flashinfer.mla._batch_mla._backends.fa2_backend
import flashinfer.jit.attention.modules, flashinfer.jit.cpp_ext
for n, m in list(sys.modules.items()):
    if n.startswith('flashinfer') and getattr(m, '__file__', None):
        print(m.__file__)
"""


def main(wheel: str, site: str, cache: str, out: str) -> None:
    env = dict(os.environ, PYTHONPATH=site, FLASHINFER_CUDA_ARCH_LIST="9.0a")
    loaded = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                            check=True, cwd="/tmp").stdout.split()
    rel = {os.path.relpath(os.path.realpath(f), wheel) for f in loaded}
    files = set(rel)
    for d in {os.path.dirname(r) for r in rel} | {"flashinfer/mla", "flashinfer/jit", "flashinfer/trace"}:
        deep = d in ("flashinfer/mla", "flashinfer/jit", "flashinfer/trace")
        for ext in ("py", "json"):
            pat = f"{d}/**/*.{ext}" if deep else f"{d}/*.{ext}"
            files |= {f for f in glob.glob(pat, root_dir=wheel, recursive=deep)}
    files |= set(glob.glob("flashinfer/data/csrc/batch_mla*", root_dir=wheel))
    data = os.path.join(os.path.realpath(wheel), "flashinfer/data")
    mods = sorted(d for d in os.listdir(cache) if os.path.exists(os.path.join(cache, d, d + ".so")))
    for m in mods:
        deps = subprocess.run(["ninja", "-C", os.path.join(cache, m), "-t", "deps"], capture_output=True,
                              text=True).stdout.split("\n")
        for line in deps:
            p = os.path.realpath(line.strip()) if line.startswith("    ") else ""
            if p.startswith(data):
                files.add(os.path.relpath(p, os.path.realpath(wheel)))
    with tarfile.open(out, "w:gz") as tar:
        for f in sorted(files):
            tar.add(os.path.join(wheel, f), arcname=f)
        for m in mods:  # AOT artifacts: loaded as they are, no ninja, no nvcc
            tar.add(os.path.join(cache, m, m + ".so"), arcname=f"flashinfer/data/aot/{m}/{m}.so")
    print(f"{len(files)} files + {len(mods)} prebuilt modules -> {out} ({os.path.getsize(out) / 1e6:.1f} MB)")
    for m in mods:
        print("  ", m)


if __name__ == "__main__":
    main(*sys.argv[1:5])
