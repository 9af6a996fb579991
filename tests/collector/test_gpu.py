"""Full-size correctness checks and a timing smoke test on a real GPU (skipped
without CUDA + triton). Same checks as `python -m collector check`."""
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)
pytest.importorskip("triton")

from collector import check  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.mark.parametrize("fn", [check.check_gemm, check.check_attention, check.check_indexer, check.check_modules],
                         ids=lambda f: f.__name__)
def test_checks(fn):
    from collector.gemm import probe_fp8_block
    probe_fp8_block("cuda", log=lambda *a: None)
    bad = [(n, e, t) for n, e, t in fn("cuda") if not (e <= t)]
    assert not bad, bad


def test_bencher_smoke():
    from collector.modules import AttentionModule
    from collector.timing import Bencher
    m = AttentionModule("dsa", 16, "bfloat16")
    step = m.prepare_generation(2, 3000)
    t = Bencher().time(step.run, target_ms=2, min_samples=5, max_samples=8)
    assert t.method == "cuda_graph" and len(t.samples_ms) >= 5 and t.median_ms > 0
