"""Small Triton tiles for the interpreter (CPU) runs of the kernel tests, the launch configs restored after."""
import contextlib

from collector.kernels import indexer as IDX
from collector.kernels import mla_attn as ATT
from collector.kernels.interp import patch_interpreter


@contextlib.contextmanager
def interpreter_tiles(cuda: bool):
    """On the CPU, 16-wide tiles keep the interpreter fast; on a GPU the configs stay as they are."""
    patch_interpreter()
    saved = (dict(ATT.CONFIG), dict(ATT.CONFIG_DEC), dict(IDX.CTX_CONFIG), dict(IDX.GEN_CONFIG))
    if not cuda:
        for c in (ATT.CONFIG, ATT.CONFIG_DEC):
            c.update(block_n=16, block_h_max=16)
        IDX.CTX_CONFIG.update(block_m=16, block_n=16)
        IDX.GEN_CONFIG.update(block_n=16, blocks=2)
    try:
        yield
    finally:
        ATT.CONFIG.update(saved[0]), ATT.CONFIG_DEC.update(saved[1])
        IDX.CTX_CONFIG.update(saved[2]), IDX.GEN_CONFIG.update(saved[3])
