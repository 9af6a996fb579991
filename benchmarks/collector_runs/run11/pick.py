"""Run 11: choose the collector's MLA decode for the generation sweep from the bench's JSON.

    python pick.py BASE_CONFIGS.json fi.json OUT_CONFIGS.json      (exit 3: keep the Triton decode)

FlashInfer is chosen (dense_impl "flashinfer", collector 0.3) only if one backend passed the float64
checks with both the bf16 and the FP8 cache (the sweep measures both) and its fastest bf16 page size
beats the Triton kernel at b=64 kv_len 32768 H=128 by more than 10%."""
import json
import sys

CLEAR_WIN = 0.9


def choose(rows: list[dict]) -> dict | None:
    """The FlashInfer (backend, page) to use, or None."""
    ok = [r for r in rows if r.get("pass") and "ms" in r]
    triton = {r["kv"]: r for r in ok if r["kernel"].startswith("triton")}
    fi = [r for r in ok if r["kernel"].startswith("flashinfer")]
    both = {r["kernel"].split()[1] for r in fi if r["kv"] == "fp8"}  # backends that passed FP8 too
    cands = [r for r in fi if r["kv"] == "bf16" and r["kernel"].split()[1] in both]
    if not cands or "bf16" not in triton:
        return None
    best = min(cands, key=lambda r: r["ms"])
    if best["ms"] >= CLEAR_WIN * triton["bf16"]["ms"]:
        return None
    _, backend, _, page = best["kernel"].split()
    return {"backend": backend, "page": int(page), "ms": best["ms"], "triton_ms": triton["bf16"]["ms"]}


if __name__ == "__main__":
    base, fi_json, out = sys.argv[1:4]
    pick = choose(json.load(open(fi_json))["rows"])
    print("pick:", pick)
    if pick is None:
        sys.exit(3)
    cj = json.load(open(base))
    cj.update(dense_impl="flashinfer", fi_mla_config={"backend": pick["backend"], "page": pick["page"]})
    json.dump(cj, open(out, "w"), indent=1)
