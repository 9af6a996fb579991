"""perfwh GPU collector: benchmarks DSA / MLA attention modules on a real GPU and
writes raw logs (collector CSV + JSONL run logs) under ``data/raw``.

Never imported by warehouse/estimator/assets/pipelines. Needs torch (and triton on
the GPU); ``python -m collector --help`` lists the commands.
"""

FRAMEWORK = "perfwh"
# 0.2: MLA decode through kernels/mla_decode.py (issue 16); 0.1 rows (the first data set) stay as they are.
VERSION = "0.2"
# 0.3: MLA decode through FlashInfer's paged MLA kernel (mla_attn.DENSE_IMPL = "flashinfer",
# kernels/fi_mla.py, run 11); rows measured with the Triton decode stay 0.2.
FLASHINFER_VERSION = "0.3"
# The latent-cache dtypes that collector 0.3 decodes through FlashInfer; the others keep the Triton decode
# (run 11, H100, b=64 kv_len 32k H=128: FlashInfer fa3 bf16 1.090 ms against Triton 1.960; with the FP8
# cache 3.512 ms against 1.958). `fi_mla_config["kv_dtypes"]` in a configs JSON overrides it.
FLASHINFER_KV_DTYPES = ("bfloat16",)


# 0.4: the generation prologue fused into two Triton launches (modules.PROLOGUE = "fused",
# kernels/prologue.py), on top of whichever decode `kernel_source` names; eager-prologue rows keep 0.2 / 0.3.
FUSED_PROLOGUE_VERSION = "0.4"
PROLOGUES = ("eager", "fused")
# 0.5: the fused prologue (0.4) with the bf16 MLA decode through FlashMLA's dense kernel (kernels/flashmla.py,
# run 12): a decode change gets its own version, so 0.4 (FlashInfer for the bf16 cache) stays comparable.
FLASHMLA_VERSION = "0.5"


def version_for(dense_impl: str, prologue: str = "eager") -> str:
    """The collector version of rows measured with this MLA decode implementation and prologue."""
    if prologue not in PROLOGUES:
        raise ValueError(f"prologue {prologue!r}: expected one of {PROLOGUES}")
    if dense_impl == "flashmla":
        if prologue != "fused":  # it came after 0.4: no eager-prologue version of it
            raise ValueError("the FlashMLA decode is measured with the fused prologue only (collector 0.5)")
        return FLASHMLA_VERSION
    if prologue == "fused":
        return FUSED_PROLOGUE_VERSION
    return FLASHINFER_VERSION if dense_impl == "flashinfer" else VERSION
