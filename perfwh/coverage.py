"""`perfwh coverage`: which systems, backends, versions and ops the warehouse holds, and where it measured."""

from __future__ import annotations

import json
import sys

from perfwh.warehouse import add_home


def register(sub) -> None:
    p = sub.add_parser(
        "coverage",
        help="systems, backends, versions, ops and the measured region of every slice",
        description="List what the warehouse holds. Per slice (system, backend, version, op, kernel, "
        "dtypes, heads, prefix) the measured region: runs of batch sizes with the isl (context) or "
        "kv_len (generation) range measured at them, not a bounding box. A query inside a run's range "
        "is measured or interpolated; outside it, extrapolated or transferred. A slice whose precision the "
        "estimator does not model (nvfp4) is marked 'not queryable' with the reason.",
    )
    p.add_argument("--system", default=None, help="only this system, e.g. h200_sxm (default: all)")
    p.add_argument("--backend", default=None, help="only this backend (framework), e.g. trtllm, perfwh (default: all)")
    p.add_argument("--version", default=None, help="only this backend version (default: all)")
    p.add_argument("--op", default=None, help="only this op: dsa_context, dsa_generation, mla_context, "
                   "mla_generation, mla_context_kernel, mla_generation_kernel (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON: one object per slice (default: text)")
    add_home(p)
    p.set_defaults(handler=cmd_coverage)


def cmd_coverage(args) -> int:
    from warehouse.coverage import coverage, region_text
    from warehouse.read import home_path, warehouse_exists
    from warehouse.vocab import Op

    if not warehouse_exists(args.home):
        raise FileNotFoundError(f"no warehouse at {home_path(args.home)}: run `perfwh ingest PATH` or "
                                "`perfwh materialize` first (or pass --home / set PERFWH_HOME)")
    from estimator.common import not_queryable
    from estimator.lookup.query import FRAMEWORKS

    op = Op.parse(args.op).name if args.op else None
    if args.backend:  # the spellings query takes (PERFWH, tensorrt-llm) matched nothing here
        args.backend = FRAMEWORKS.get(args.backend.lower(), args.backend)
    slices = coverage(args.home, system=args.system, framework=args.backend, version=args.version, op=op)
    for s in slices:  # a slice the estimator cannot answer says so (e.g. nvfp4 GEMMs)
        s["not_queryable"] = not_queryable(s)
    if args.json:
        print(json.dumps(slices, indent=1))
    if not slices:  # the same exit status for either form: a script can tell "nothing matched"
        from warehouse.read import available_slices

        have = available_slices(args.home)
        held = sorted({f"{s}/{f} {v}" for s, f, v in have.select("system", "framework", "version").iter_rows()})
        print("no data" + "".join(f" {k}={v}" for k, v in (("system", args.system), ("backend", args.backend),
                                                          ("version", args.version), ("op", op)) if v)
              + f"; the warehouse holds {', '.join(held) if held else 'no measurements'}", file=sys.stderr)
        return 1
    if args.json:
        return 0
    last = None
    for s in slices:
        head = (s["system"], s["framework"], s["version"], s["op"])
        if head != last:
            print(f"{s['system']} / {s['framework']} {s['version']} / {s['op']}")
            last = head
        prefix = "" if s["prefix"] is None else f" prefix {s['prefix']}"
        print(f"  {s['kernel_source']} {s['architecture']} attn {s['attn_dtype']} kv {s['kv_cache_dtype']} "
              f"gemm {s['gemm_type']} heads {s['num_heads']}{prefix}: {s['points']} points"
              + (f" (not queryable: {s['not_queryable']})" if s["not_queryable"] else ""))
        print(f"    {region_text(s)}")
    return 0
