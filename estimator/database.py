"""PerfDatabase: DSA/MLA latency lookups over the warehouse, with provenance.

Construction loads the warehouse's perf points, the `sol_calibration` table
and the `grids` table (rebuilding either when its input hash is stale) for one
(system, framework, version). Lookups then never touch the disk.

Fallback chain (each answer says which step gave it):
measured -> interpolated -> extrapolated -> transferred (related slice,
another GPU of the family, another index_topk / index_n_heads) -> sol
(calibrated SOL alone).
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import polars as pl

from warehouse.schema import phase_of, seq_column
from warehouse.vocab import Op, op_names

from . import interp
from .calibrate import CalibrationParams, params_from_frame
from .common import FMHAQuantMode, GEMMQuantMode, KVCacheQuantMode, Source
from .engine import estimate_group
from .estimate import Estimate
from .fastsol import compile_array, compile_scalar
from .grid import SOURCES, GridSet, GroupGrids
from .intervals import IntervalLookup, class_code, distance_many, distance_one
from .lookup import lookup_one, nearest_measured
from .slices import GROUP_KEYS, family_of, model_for
from .specs import ModelSpec, architectures, load_system, system_names

OPS = op_names()
FRAMEWORKS = {"trtllm": "trtllm", "tensorrt-llm": "trtllm", "tensorrt_llm": "trtllm",
              "vllm": "vllm", "sglang": "sglang", "perfwh": "perfwh"}
METHODS = ("interp", "nearest")
_SOURCE_ENUM = tuple(Source(s) for s in SOURCES)
SOURCE_DTYPE = pl.Enum(list(SOURCES))  # estimate_many's `source` column
_SOURCE_NAMES = pl.Series("source", list(SOURCES), dtype=SOURCE_DTYPE)
_IV_CLASS = tuple(class_code(s) for s in SOURCES)  # grid provenance code -> interval class
_IV_CLASS_ARR = np.asarray(_IV_CLASS, dtype=np.int8)
_IV_NEAREST = class_code("nearest", "nearest")


def canonical_op(op: str) -> str:
    """The canonical name of an op or alias (`Op.parse`); ValueError names the valid ones."""
    return Op.parse(op).name


def _version_key(v: str):
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|[A-Za-z]+", v))


def _positive_int(name: str, value) -> int:
    if type(value) is int and value > 0:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _non_negative_int(name: str, value) -> int:
    if value == 0:
        return 0
    return _positive_int(name, value)


@dataclasses.dataclass(frozen=True)
class _Resolved:
    """A query's categorical key resolved to the data that answers it."""

    group: GroupGrids | None
    key: tuple  # GROUP_KEYS values of the answering data (or of the query when none)
    transferred_from: str | None
    model: ModelSpec
    params: CalibrationParams
    gemm_type: str  # the query's own precisions: the SOL is always evaluated for the query
    kv_cache_dtype: str
    scalar_sol: object  # fastsol.compile_scalar(...) for this query: (b, seq, prefix, heads) -> (cal, raw)
    array_sol: object  # fastsol.compile_array(..., float32) for estimate_many
    slice_items: tuple  # ((key, value), ...) of the answering data, for Estimate.slice


class PerfDatabase:
    """Latency lookups for one system / backend / version of the warehouse."""

    def __init__(self, system: str = "h200_sxm", backend: str = "trtllm", version: str | None = None,
                 home=None, *, calibration: pl.DataFrame | None = None, grids: pl.DataFrame | None = None,
                 intervals: pl.DataFrame | None = None):
        self.spec = load_system(system)
        self.system = system
        framework = FRAMEWORKS.get(str(backend).lower())
        if framework is None:
            raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(sorted(set(FRAMEWORKS.values())))}")
        self.framework = framework
        if grids is None or calibration is None:
            from .store import build_derived

            calibration, grids = build_derived(home)
            if intervals is None:
                from .store import ensure_interval_model

                intervals = ensure_interval_model(home, grids)
        have = grids.select("system", "framework", "version").unique()
        fw_rows = have.filter(pl.col("framework") == framework)
        if fw_rows.height == 0:
            raise ValueError(f"no data for backend {framework!r} in the warehouse; "
                             f"backends with data: {', '.join(sorted(have['framework'].unique()))}")
        self.data_system = self._data_system(system, fw_rows)
        versions = sorted(fw_rows.filter(pl.col("system") == self.data_system)["version"].to_list(),
                          key=_version_key)
        if version is None:
            version = versions[-1]
        elif version not in versions:
            raise ValueError(f"unknown version {version!r} for {self.data_system}/{framework}; "
                             f"valid: {', '.join(versions)}")
        self.version = version
        mine = (pl.col("system") == self.data_system) & (pl.col("framework") == framework) & (
            pl.col("version") == version)
        self.grids = GridSet.from_frame(grids.filter(mine))
        self.params = {(k[3], k[4]): p for k, p in params_from_frame(calibration.filter(mine)).items()}
        self.intervals = IntervalLookup(intervals)  # empty (NaN bounds) when no interval table is given
        self._resolved: dict[tuple, _Resolved] = {}
        self._by_args: dict[tuple, _Resolved] = {}  # raw estimate() arguments -> resolution

    def _data_system(self, system: str, fw_rows: pl.DataFrame) -> str:
        systems = sorted(fw_rows["system"].unique().to_list())
        if system in systems:
            return system
        family = [s for s in systems if s in system_names() and load_system(s).family == self.spec.family]
        if not family:
            raise ValueError(f"no data for system {system!r} (or its family) with backend {self.framework!r}; "
                             f"systems with data: {', '.join(systems)}")
        return family[0]

    # ---- resolution ---------------------------------------------------------------------
    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(sorted({op for op, _ in self.params}))

    def _params_for(self, op: str, kernel_source: str | None) -> CalibrationParams:
        """The op's fit for this kernel_source; else its 'default' (or first) kernel_source's."""
        if (op, kernel_source) in self.params:
            return self.params[(op, kernel_source)]
        sources = sorted(s for o, s in self.params if o == op)
        return self.params[(op, "default" if "default" in sources else sources[0])]

    def slices(self) -> pl.DataFrame:
        """The group keys this database holds (what `query_*` can answer from data)."""
        rows = [dict(zip(GROUP_KEYS, k)) for k in self.grids.groups]
        return pl.DataFrame(rows).sort(list(GROUP_KEYS), nulls_last=True) if rows else pl.DataFrame()

    def _resolve(self, op: str, kernel_source, architecture, attn_dtype, kv_cache_dtype, gemm_type,
                 index_topk, index_n_heads) -> _Resolved:
        ck = (op, kernel_source, architecture, attn_dtype, kv_cache_dtype, gemm_type, index_topk, index_n_heads)
        hit = self._resolved.get(ck)
        if hit is not None:
            return hit
        if op not in self.ops:
            raise KeyError(f"no data or calibration for op {op!r} in {self.data_system}/{self.framework}/"
                           f"{self.version}; ops with data: {', '.join(self.ops)}")
        kernel_op = Op.parse(op).kernel_only
        if architecture is not None and architecture not in architectures(family_of(op)) and not kernel_op:
            raise ValueError(f"unknown architecture {architecture!r} for {op}; "
                             f"valid: {', '.join(architectures(family_of(op)))}")
        model = model_for(op, None if kernel_op else architecture)
        want = {"op": op, "kernel_source": kernel_source, "architecture": None if kernel_op else model.architecture,
                "attn_dtype": attn_dtype, "kv_cache_dtype": kv_cache_dtype,
                "gemm_type": None if kernel_op else gemm_type}
        cands = [k for k in self.grids.groups if k[3] == op]
        notes = []
        exact = [k for k in cands if all(
            want[c] is None and c == "kernel_source" or dict(zip(GROUP_KEYS, k))[c] == want[c]
            for c in ("kernel_source", "architecture", "attn_dtype", "kv_cache_dtype", "gemm_type"))]
        if exact:
            key = self._pick_kernel_source(exact)
        elif cands:
            key = max(cands, key=lambda k: self._similarity(dict(zip(GROUP_KEYS, k)), want))
            kd = dict(zip(GROUP_KEYS, key))
            notes += [f"{c}={want[c]}->{kd[c]}" for c in ("architecture", "attn_dtype", "kv_cache_dtype",
                                                             "gemm_type", "kernel_source")
                      if want[c] is not None and kd[c] != want[c]]
        else:
            key = None
        if self.data_system != self.system:
            notes.append(f"system={self.system}<-{self.data_system}")
        repl = {}
        if index_topk is not None and family_of(op) == "dsa" and index_topk != model.index_topk:
            repl["index_topk"] = index_topk
            notes.append(f"index_topk={index_topk}<-{model.index_topk}")
        if index_n_heads is not None and family_of(op) == "dsa" and index_n_heads != model.index_n_heads:
            repl["index_n_heads"] = index_n_heads
            notes.append(f"index_n_heads={index_n_heads}<-{model.index_n_heads}")
        if repl:
            model = dataclasses.replace(model, **repl)
        params = self._params_for(op, key[4] if key else kernel_source)
        sol_gemm = "bfloat16" if kernel_op else gemm_type
        res = _Resolved(self.grids.groups.get(key) if key else None,
                        key if key else (self.data_system, self.framework, self.version, op, kernel_source,
                                         want["architecture"], attn_dtype, kv_cache_dtype, want["gemm_type"]),
                        "; ".join(notes) or None, model, params, sol_gemm, kv_cache_dtype,
                        compile_scalar(op, model, self.spec, params, gemm_type=sol_gemm,
                                       kv_cache_dtype=kv_cache_dtype),
                        compile_array(op, model, self.spec, params, gemm_type=sol_gemm,
                                      kv_cache_dtype=kv_cache_dtype, dtype=np.float32),
                        ())
        res = dataclasses.replace(res, slice_items=tuple(zip(GROUP_KEYS, res.key)))
        self._resolved[ck] = res
        return res

    def _pick_kernel_source(self, keys: list[tuple]) -> tuple:
        """One kernel_source when several match: 'default' if present, else the largest grid."""
        if len(keys) == 1:
            return keys[0]
        for k in keys:
            if k[4] == "default":
                return k
        return max(keys, key=lambda k: (sum(sg.ratio.size for sg in self.grids.groups[k].slices.values()), k[4]))

    @staticmethod
    def _similarity(have: dict, want: dict) -> tuple:
        return tuple(int(want[c] is None or have[c] == want[c])
                     for c in ("architecture", "gemm_type", "kv_cache_dtype", "attn_dtype", "kernel_source"))

    # ---- scalar estimate ------------------------------------------------------------------
    def estimate(self, op: str, *, batch_size: int, s: int | None = None, isl: int | None = None,
                 kv_len: int | None = None, num_heads: int, prefix: int = 0,
                 gemm_type: str | GEMMQuantMode = GEMMQuantMode.bfloat16,
                 kv_cache_dtype: str | KVCacheQuantMode = KVCacheQuantMode.bfloat16,
                 attn_dtype: str | FMHAQuantMode = FMHAQuantMode.bfloat16,
                 architecture: str | None = None, kernel_source: str | None = None,
                 index_topk: int | None = None, index_n_heads: int | None = None,
                 method: str = "interp") -> Estimate:
        """Latency of one call of `op` at one shape, through the whole fallback chain.

        The sequence is `s` (or `isl` for context ops, `kv_len` for generation ops):
        new tokens per request in context, KV length in generation; `prefix` is the
        cached tokens of a context request.
        """
        op = canonical_op(op)
        seq = self._seq_arg(op, s, isl, kv_len)
        b = _positive_int("batch_size", batch_size)
        h = _positive_int("num_heads", num_heads)
        pre = _non_negative_int("prefix", prefix)
        if phase_of(op) == "generation" and pre:
            raise ValueError(f"prefix applies to context ops only; got prefix={prefix} for {op}")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
        raw_key = (op, kernel_source, architecture, attn_dtype, kv_cache_dtype, gemm_type, index_topk, index_n_heads)
        try:
            res = self._by_args.get(raw_key)
        except TypeError:  # an unhashable argument: let the parsers below name it
            res, raw_key = None, None
        if res is None:
            res = self._resolve(
                op, kernel_source, architecture, FMHAQuantMode.parse(attn_dtype).value,
                KVCacheQuantMode.parse(kv_cache_dtype).value, GEMMQuantMode.parse(gemm_type).value,
                None if index_topk is None else _positive_int("index_topk", index_topk),
                None if index_n_heads is None else _positive_int("index_n_heads", index_n_heads))
            if raw_key is not None:
                self._by_args[raw_key] = res
        cal, raw = res.scalar_sol(b, seq, pre, h)
        if res.group is None:
            ratio, code, nbrs = 0.0, interp.SOL, []
        elif method == "nearest":
            lat, cell = nearest_measured(res.group, h, pre, b, seq)
            ratio = math.log2(lat / cal)
            exact = cell == (h, pre, b, seq)
            code = interp.MEASURED if exact else interp.INTERPOLATED
            nbrs = [(cell[0], cell[1], cell[2], cell[3], 1.0, interp.MEASURED)]
        else:
            ratio, code, nbrs = lookup_one(res.group, h, pre, b, seq)
            if math.isnan(ratio):
                ratio, code, nbrs = 0.0, interp.SOL, []
        if res.transferred_from and code < interp.TRANSFERRED:
            code = interp.TRANSFERRED
        latency = cal * 2.0**ratio
        if self.intervals.cells:
            lo, hi, err = self.intervals.bounds(op, _IV_NEAREST if method == "nearest" else _IV_CLASS[code],
                                                distance_one(res.group, h, pre, b, seq), latency)
        else:
            lo = hi = err = math.nan
        # positional: (latency_ms, source, op, system, framework, version, sol_ms, raw_sol_ms,
        # log2_ratio, neighbour_cells, slice, transferred_from, method, low_ms, high_ms, expected_error_pct)
        return Estimate(latency, _SOURCE_ENUM[code], op, self.system, self.framework, self.version, cal, raw,
                        ratio, nbrs, res.slice_items, res.transferred_from, method, lo, hi, err)

    @staticmethod
    def _seq_arg(op: str, s, isl, kv_len) -> int:
        if isl is None and kv_len is None and type(s) is int and s > 0:
            return s
        name = seq_column(op)
        given = {"s": s, "isl": isl, "kv_len": kv_len}
        present = [n for n, v in given.items() if v is not None]
        if len(present) != 1 or present[0] not in ("s", name):
            raise ValueError(f"{op} takes its sequence as s= or {name}= (exactly one); got "
                             f"{', '.join(f'{n}={given[n]}' for n in present) or 'none'}")
        return _positive_int(present[0], given[present[0]])

    # ---- vectorised ------------------------------------------------------------------------
    def estimate_many(self, op: str, frame: pl.DataFrame, **defaults) -> pl.DataFrame:
        """`frame` plus latency_ms, source, low_ms and high_ms (80% interval) columns, vectorised (float32 arithmetic:
        values agree with `estimate` to ~1e-6 relative).

        Columns: batch_size, isl (context) or kv_len (generation) (or seq_len), num_heads,
        optional prefix; optional categorical columns gemm_type, kv_cache_dtype,
        attn_dtype, architecture, kernel_source (else `defaults`, else the same
        defaults as `estimate`). Extra columns are kept.
        """
        op = canonical_op(op)
        context = phase_of(op) == "context"
        seq_col = next((c for c in (("isl" if context else "kv_len"), "seq_len") if c in frame.columns), None)
        missing = [c for c in ("batch_size", "num_heads") if c not in frame.columns]
        if seq_col is None or missing:
            raise ValueError(f"estimate_many({op}) needs columns batch_size, num_heads and "
                             f"{'isl' if context else 'kv_len'} (or seq_len); missing: "
                             f"{', '.join(missing + ([] if seq_col else ['isl' if context else 'kv_len']))}")
        unknown = set(defaults) - {"gemm_type", "kv_cache_dtype", "attn_dtype", "architecture", "kernel_source",
                                   "index_topk", "index_n_heads"}
        if unknown:
            raise ValueError(f"unknown estimate_many options: {', '.join(sorted(unknown))}")
        for name in ("index_topk", "index_n_heads"):
            if defaults.get(name) is not None:
                defaults[name] = _positive_int(name, defaults[name])
        n = frame.height
        b = self._int_column(frame, "batch_size", positive=True)
        h = self._int_column(frame, "num_heads", positive=True)
        seq = self._int_column(frame, seq_col, positive=True)
        pre = (self._int_column(frame, "prefix", positive=False) if "prefix" in frame.columns
               else np.zeros(n, dtype=np.float32))
        if not context and np.any(pre != 0):
            raise ValueError(f"prefix applies to context ops only; {op} got non-zero prefix")
        cat_defaults = {"gemm_type": GEMMQuantMode.parse(defaults.get("gemm_type", "bfloat16")).value,
                        "kv_cache_dtype": KVCacheQuantMode.parse(defaults.get("kv_cache_dtype", "bfloat16")).value,
                        "attn_dtype": FMHAQuantMode.parse(defaults.get("attn_dtype", "bfloat16")).value,
                        "architecture": defaults.get("architecture"), "kernel_source": defaults.get("kernel_source")}
        cats = [c for c in cat_defaults if c in frame.columns]
        latency = np.empty(n)
        code = np.empty(n, dtype=np.int8)
        q_lo, q_hi = np.full(n, np.nan), np.full(n, np.nan)
        if cats:
            groups = frame.select(cats).with_row_index("_row").group_by(cats, maintain_order=True)
            parts = [(dict(zip(cats, key)), sub["_row"].to_numpy()) for key, sub in groups]
        else:
            parts = [({}, None)]
        for values, rows in parts:
            cat = {**cat_defaults, **{c: v for c, v in values.items() if v is not None}}
            for c in ("gemm_type", "kv_cache_dtype", "attn_dtype"):
                cat[c] = {"gemm_type": GEMMQuantMode, "kv_cache_dtype": KVCacheQuantMode,
                          "attn_dtype": FMHAQuantMode}[c].parse(cat[c]).value
            res = self._resolve(op, cat["kernel_source"], cat["architecture"], cat["attn_dtype"],
                                cat["kv_cache_dtype"], cat["gemm_type"], defaults.get("index_topk"),
                                defaults.get("index_n_heads"))
            sel = slice(None) if rows is None else rows
            sq = seq[sel]
            lat, cd, _ = estimate_group(
                res.group, op, res.model, self.spec, res.params, gemm_type=res.gemm_type,
                kv_cache_dtype=res.kv_cache_dtype, batch=b[sel], isl=sq if context else 1.0, prefix=pre[sel],
                kv_len=0.0 if context else sq, num_heads=h[sel], transferred=res.transferred_from is not None,
                sol_fn=res.array_sol, dtype=np.float32)
            latency[sel] = lat
            code[sel] = cd
            if self.intervals.cells:
                dist = distance_many(res.group, h[sel], pre[sel], b[sel], sq)
                q_lo[sel], q_hi[sel], _ = self.intervals.quantiles_many(op, _IV_CLASS_ARR[cd], dist)
        source = _SOURCE_NAMES.gather(code.astype(np.uint32))
        return frame.with_columns(pl.Series("latency_ms", latency), source,
                                  pl.Series("low_ms", latency * np.exp2(q_lo)),
                                  pl.Series("high_ms", latency * np.exp2(q_hi)))

    @staticmethod
    def _int_column(frame: pl.DataFrame, name: str, *, positive: bool) -> np.ndarray:
        col = frame[name]
        if col.null_count():
            raise ValueError(f"column {name} has {col.null_count()} null value(s)")
        if col.dtype.is_integer():
            low = col.min()
            if low is None or (low > 0 if positive else low >= 0):
                return col.to_numpy().astype(np.float32)
        elif not col.dtype.is_numeric():
            raise ValueError(f"column {name} must hold integers; it has type {col.dtype}")
        arr = col.to_numpy().astype(np.float64, copy=False)
        bad = ~np.isfinite(arr) | (arr != np.floor(arr)) | ((arr <= 0) if positive else (arr < 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            kind = "positive" if positive else "non-negative"
            raise ValueError(f"column {name} must hold {kind} integers; row {i} has {col[i]!r}")
        return arr.astype(np.float32)

    # ---- the draft's lookup API (data only; KeyError when the slice has no data) ------------
    def _query(self, op: str, b: int, s: int, num_heads: int, prefix: int, kvcache_quant_mode,
               fmha_quant_mode, gemm_quant_mode, architecture, index_n_heads, index_topk) -> float:
        est = self.estimate(op, batch_size=b, s=s, num_heads=num_heads, prefix=prefix,
                            gemm_type=gemm_quant_mode, kv_cache_dtype=kvcache_quant_mode,
                            attn_dtype=fmha_quant_mode, architecture=architecture,
                            index_topk=index_topk, index_n_heads=index_n_heads)
        if est.source in (Source.transferred, Source.sol):
            what = est.transferred_from or "no grid for this slice"
            raise KeyError(f"no {op} data in {self.data_system}/{self.framework}/{self.version} for "
                           f"{dict(est.slice)} ({what})")
        return est.latency_ms

    def query_context_dsa(self, b: int, s: int, num_heads: int, index_n_heads: int | None = None,
                          index_topk: int | None = None, kvcache_quant_mode=KVCacheQuantMode.bfloat16,
                          fmha_quant_mode=FMHAQuantMode.bfloat16, prefix: int = 0,
                          gemm_quant_mode=GEMMQuantMode.bfloat16, architecture: str | None = None) -> float:
        """DSA context (prefill) module latency in ms from measured / interpolated data."""
        return self._query("dsa_context", b, s, num_heads, prefix, kvcache_quant_mode, fmha_quant_mode,
                           gemm_quant_mode, architecture, index_n_heads, index_topk)

    def query_generation_dsa(self, b: int, s: int, num_heads: int, index_n_heads: int | None = None,
                             index_topk: int | None = None, kvcache_quant_mode=KVCacheQuantMode.bfloat16,
                             fmha_quant_mode=FMHAQuantMode.bfloat16, gemm_quant_mode=GEMMQuantMode.bfloat16,
                             architecture: str | None = None) -> float:
        """DSA generation (decode) module latency in ms; s is the KV length."""
        return self._query("dsa_generation", b, s, num_heads, 0, kvcache_quant_mode, fmha_quant_mode,
                           gemm_quant_mode, architecture, index_n_heads, index_topk)

    def query_context_mla(self, b: int, s: int, num_heads: int, kvcache_quant_mode=KVCacheQuantMode.bfloat16,
                          fmha_quant_mode=FMHAQuantMode.bfloat16, prefix: int = 0,
                          gemm_quant_mode=GEMMQuantMode.bfloat16, architecture: str | None = None) -> float:
        """MLA context (prefill) module latency in ms."""
        return self._query("mla_context", b, s, num_heads, prefix, kvcache_quant_mode, fmha_quant_mode,
                           gemm_quant_mode, architecture, None, None)

    def query_generation_mla(self, b: int, s: int, num_heads: int, kvcache_quant_mode=KVCacheQuantMode.bfloat16,
                             fmha_quant_mode=FMHAQuantMode.bfloat16, gemm_quant_mode=GEMMQuantMode.bfloat16,
                             architecture: str | None = None) -> float:
        """MLA generation (decode) module latency in ms; s is the KV length."""
        return self._query("mla_generation", b, s, num_heads, 0, kvcache_quant_mode, fmha_quant_mode,
                           gemm_quant_mode, architecture, None, None)
