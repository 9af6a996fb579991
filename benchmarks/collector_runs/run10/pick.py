"""Run 10: the fastest decode config that passed the float64 checks, per cache dtype, into a configs JSON.

    python pick.py BASE_CONFIGS.json bf16.json fp8.json OUT_CONFIGS.json

Keeps BASE's layers for fewer than 64 heads (their configs were measured at H=32, collector/README.md),
with gs/pp switched off there; prints what it chose."""
import json
import sys

base, fb, ff, out = sys.argv[1:5]
cj = json.load(open(base))
dc = cj["decode_config"]
KEYS = ("block_n", "num_warps", "num_stages", "peel", "gs", "pp", "f16", "desc")


def best(path):
    rows = [r for r in json.load(open(path))["rows"] if r.get("config") and "ms" in r
            and r["rel_err"] < 2e-2 and r.get("full_rel_err", 0) < 2e-2]
    return min(rows, key=lambda r: r["ms"]) if rows else None


b, f = best(fb), best(ff)
if b:
    dc.update({k: b["config"].get(k, False) for k in KEYS if k not in ("block_n", "num_warps", "num_stages")})
    dc.update({k: b["config"][k] for k in ("block_n", "num_warps", "num_stages")})
if f:
    dc["fp8"] = {k: f["config"].get(k, False) for k in KEYS}
dc["small_h"] = dict(dc.get("small_h", {}), gs=False, pp=False)
json.dump(cj, open(out, "w"), indent=1)
print("bf16 best", b and (b["name"], round(b["ms"], 4)), "fp8 best", f and (f["name"], round(f["ms"], 4)))
print("decode_config", dc)
# exit 3 when neither cache dtype got a new variant: nothing to re-measure
sys.exit(0 if any(r and (r["config"].get("gs") or r["config"].get("pp")) for r in (b, f)) else 3)
