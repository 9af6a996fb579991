"""Write the decode launch overrides for fewer than 64 heads into a configs JSON.

Reads decode_bench.py JSON summaries measured at a small head count (bf16 and FP8 cache),
takes the fastest config that passed the float64 check per cache dtype, and stores what it
changes over the layered config for >= 64 heads as decode_config["small_h"] / ["small_h_fp8"].

    python benchmarks/collector_runs/pick_small_h.py CONFIGS.json BF16.json FP8.json
"""
import json
import sys

KEYS = ("block_n", "num_warps", "num_stages", "peel", "f16", "desc", "fp8_dot")
DEFAULTS = dict(peel=False, f16=False, desc=False, fp8_dot=False)


def best(path):
    rows = [r for r in json.load(open(path))["rows"]
            if r.get("config") is not None and "ms" in r and r["rel_err"] < 2e-2 and r.get("splits_arg") is None]
    r = min(rows, key=lambda r: r["ms"])
    print(f"{path}: {r['name']} {r['ms']:.4f} ms (of {len(rows)})")
    return dict(DEFAULTS, **r["config"])


def main(cfg_path, bf16_path, fp8_path):
    cj = json.load(open(cfg_path))
    dc = cj["decode_config"]
    full = dict(DEFAULTS, **dc)
    b = best(bf16_path)
    dc["small_h"] = {k: b[k] for k in KEYS if k in b and full.get(k) != b[k]}
    layered = dict(full, **dc.get("fp8", {}), **dc["small_h"])
    f = best(fp8_path)
    dc["small_h_fp8"] = {k: f[k] for k in KEYS if k in f and layered.get(k) != f[k]}
    open(cfg_path, "w").write(json.dumps(cj, indent=1) + "\n")
    print("small_h", dc["small_h"], "small_h_fp8", dc["small_h_fp8"])


if __name__ == "__main__":
    main(*sys.argv[1:4])
