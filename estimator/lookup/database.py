"""PerfDatabase: DSA/MLA latency lookups over the warehouse, with provenance.

Construction loads the `sol_calibration` and `grids` tables of one system /
framework's (system, framework, version) partitions only (estimator.derived.store
rebuilds a partition first when its inputs changed). Lookups then never touch
the disk.

Fallback chain (each answer says which step gave it):
measured -> interpolated -> extrapolated -> transferred (related slice,
another GPU: `from_system`, else the one with data nearest by spec, moved
through the physics of estimator/physics/transfer.py; another index_topk /
index_n_heads) -> sol (calibrated SOL alone).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import polars as pl

from warehouse.schema import phase_of, seq_column
from warehouse.vocab import Op

from estimator.grids import interp
from estimator.grids.anchors import clean_anchors
from estimator.physics import transfer
from estimator.physics.calibrate import CalibrationParams, params_from_frame
from estimator.physics.transfer_terms import TERM_SCHEMA, TERM_TABLE, class_shapes, moved_params, term_multipliers
from estimator.common import FMHAQuantMode, GEMMQuantMode, KVCacheQuantMode, Source
from estimator.lookup.estimate import Estimate
from estimator.physics.fastsol import compile_array, compile_scalar
from estimator.lookup.grids import GridSet
from estimator.lookup.intervals import IntervalLookup
from estimator.lookup.transfer_intervals import SCHEMA as TRANSFER_SCHEMA, TABLE as TRANSFER_TABLE, TransferIntervals
from estimator.lookup.transfer_intervals import relation as transfer_relation
from estimator.lookup.distance import distance_one
from estimator.lookup.limits import MAX_INT, OutOfRangeError, beyond, check_model, group_bounds
from estimator.lookup.interpolate import lookup_one, nearest_measured
from estimator.slices import GROUP_KEYS, family_of, model_for
from estimator.physics.specs import architectures, load_system
from estimator.physics.variants import AttentionVariant, attention_variant
from estimator.lookup.versions import VersionError, sort_versions, version_key
from estimator.lookup.many import ManyEstimates
from estimator.lookup.query import (
    FRAMEWORKS, METHODS, _IV_CLASS, _Resolved, _SOURCE_ENUM, _non_negative_int, _positive_int, canonical_op,
)

__all__ = ["PerfDatabase", "OutOfRangeError", "VersionError", "canonical_op"]


def _read_transfer_table(home, table: str = TRANSFER_TABLE, schema: dict | None = None) -> pl.DataFrame | None:
    """The warehouse's transfer_intervals (or transfer_overheads, transfer_terms) table, None when never
    written; a table without the columns of `schema` (written by an older perfwh) is a one-line error."""
    from warehouse.derived import read_derived

    try:
        frame = read_derived(home, table)
    except FileNotFoundError:
        return None
    if missing := [c for c in (schema or {}) if c not in frame.columns]:
        raise ValueError(f"the warehouse's derived table {table} lacks column(s) {', '.join(missing)} (written by "
                         "an older perfwh): rebuild it with `perfwh accuracy --fit-transfer-intervals`")
    return frame


def _proxy_pairs(shapes: pl.DataFrame, version: str, op: str, kernel_source: str) -> str:
    """The proxy pairs (e.g. 'b300_sxm<-h100_sxm') whose shapes a slice's term multipliers were fitted on."""
    rows = shapes.filter((pl.col("version") == version) & (pl.col("op") == op))
    own = rows.filter(pl.col("kernel_source") == kernel_source)
    pairs = {p for joined in (own if own.height else rows)["pairs"] for p in joined.split(", ")}
    return ", ".join(sorted(pairs))


def _variant_text(v: AttentionVariant) -> str:
    """'DSA', 'dense MHA', 'DSA without indexer', ... for provenance notes."""
    return ("dense MHA" if v.dense else "DSA") + ("" if v.indexer else " without indexer")


def _check_tables(**given) -> None:
    """Frames passed in place of the warehouse's tables: the right type and columns, and calibration with
    grids (one of them alone was silently replaced by the warehouse's tables). An empty interval table
    means 'no interval model' (NaN bounds)."""
    from estimator.grids.schema import GRID_SCHEMA
    from estimator.lookup.intervals import SCHEMA as IV_SCHEMA
    from estimator.physics.calibrate import CALIBRATION_SCHEMA

    if (given["calibration"] is None) != (given["grids"] is None):
        raise ValueError("pass calibration= and grids= together (a database built from frames), or neither "
                         "(the warehouse's own tables)")
    schemas = {"calibration": CALIBRATION_SCHEMA, "grids": GRID_SCHEMA, "intervals": IV_SCHEMA,
               "transfer_intervals": TRANSFER_SCHEMA, "transfer_overheads": transfer.OVERHEAD_SCHEMA,
               "transfer_terms": TERM_SCHEMA}
    for name, frame in given.items():
        if frame is None:
            continue
        if not isinstance(frame, pl.DataFrame):
            raise TypeError(f"{name} must be a polars DataFrame, got {type(frame).__name__}")
        missing = [c for c in schemas[name] if c not in frame.columns]
        if missing and (frame.height or name in ("calibration", "grids")):
            raise ValueError(f"{name} lacks column(s) {', '.join(missing)} of its table "
                             f"({', '.join(schemas[name])})")


class PerfDatabase(ManyEstimates):
    """Latency lookups for one system / backend / version of the warehouse."""

    def __init__(self, system: str = "h200_sxm", backend: str = "trtllm", version: str | None = None,
                 home=None, *, calibration: pl.DataFrame | None = None, grids: pl.DataFrame | None = None,
                 from_system: str | None = None, intervals: pl.DataFrame | None = None,
                 transfer_intervals: pl.DataFrame | None = None, transfer_overheads: pl.DataFrame | None = None,
                 transfer_terms: pl.DataFrame | None = None):
        self.spec = load_system(system)
        self.system = system
        framework = FRAMEWORKS.get(str(backend).lower())
        if framework is None:
            raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(sorted(set(FRAMEWORKS.values())))}")
        self.framework = framework
        _check_tables(calibration=calibration, grids=grids, intervals=intervals,
                      transfer_intervals=transfer_intervals, transfer_overheads=transfer_overheads,
                      transfer_terms=transfer_terms)
        store = None
        if grids is None or calibration is None:  # load only this system/backend's partitions (store.py)
            from estimator.derived.store import DerivedStore

            store = DerivedStore(home)
            have = pl.DataFrame(list(store.partitions()), schema=["system", "framework", "version"], orient="row")
        else:
            have = grids.select("system", "framework", "version").unique()
        fw_rows = have.filter(pl.col("framework") == framework)
        if fw_rows.height == 0:
            if have.height == 0:  # 'backends with data: ' and nothing after it
                raise ValueError(f"no data for backend {framework!r}: the warehouse holds no measurements yet "
                                 f"(`perfwh ingest PATH`)")
            raise ValueError(f"no data for backend {framework!r} in the warehouse; "
                             f"backends with data: {', '.join(sorted(have['framework'].unique()))}")
        self._from_system = from_system
        self.data_system = transfer.source_system(system, fw_rows["system"].unique().to_list(), from_system,
                                                  framework)
        versions = sort_versions(fw_rows.filter(pl.col("system") == self.data_system)["version"].to_list())
        if version is not None and not isinstance(version, str):  # 0.1 is not "0.1": "1.10" and "1.1" differ
            raise TypeError(f"version must be a string such as {versions[-1]!r}, got {type(version).__name__} "
                            f"{version!r}")
        if version is not None and version not in versions:
            raise VersionError(f"unknown version {version!r} for {self.data_system}/{framework}; "
                               f"valid: {', '.join(versions)}")
        # Every version is loaded: without a pinned version each op answers from the newest
        # version with data for it (and its slice); `version` is then the newest overall.
        self.pinned_version = version
        self._all_versions = versions
        self.version = version or versions[-1]
        self.build_errors = pl.DataFrame()
        self._iv_loaded: dict[str, IntervalLookup] = {}
        if store is not None:
            calibration, grids, self.build_errors = self._load_partitions(store, framework, versions)
        mine = (pl.col("system") == self.data_system) & (pl.col("framework") == framework)
        grids = grids.filter(mine)
        if self.data_system != system:  # a transfer anchors on the source's grid without its slow spikes
            grids = clean_anchors(grids.filter(transfer.transferable()))  # and never moves nvfp4 slices
        self.grids = GridSet.from_frame(grids)
        # 80% intervals (estimator.lookup.intervals): the given table for every version, else each version
        # partition's own `interval_model`; empty (NaN bounds) without one
        self.intervals = (IntervalLookup(intervals) if intervals is not None
                          else self._iv_loaded.get(self.version, IntervalLookup(None)))
        self._iv_by_version: dict[str, IntervalLookup] = dict(self._iv_loaded) if intervals is None else {}
        # a transferred answer's 80% interval: the leave-one-system-out table (lookup/transfer_intervals.py),
        # given or the warehouse's derived/transfer_intervals.parquet; None for a native database. An op
        # without a row gets no interval (interval_note says why), never the source's native one
        self.transfer_intervals = None
        self._transfer_table_given = False
        self._notes: dict[str, str | None] = {}  # interval_note per op, for the scalar hot path
        if self.data_system != system:
            if transfer_intervals is None and store is not None:
                transfer_intervals = _read_transfer_table(home, TRANSFER_TABLE, TRANSFER_SCHEMA)
            self._transfer_table_given = transfer_intervals is not None and transfer_intervals.height > 0
            self.transfer_intervals = TransferIntervals(
                transfer_intervals, framework, transfer_relation(self.spec, load_system(self.data_system)))
        self.params = {(k[2], k[3], k[4]): p for k, p in params_from_frame(calibration.filter(mine)).items()}
        self._terms_from: dict[tuple, str] = {}  # (version, op, kernel_source) -> proxy pairs of its moved terms
        if self.data_system != system:  # answers move to this spec (physics/transfer.py)
            rule = transfer.TransferRule(load_system(self.data_system), self.spec)
            # across launch classes the overhead moves as the warehouse's transfer_overheads table says
            if transfer_overheads is None and store is not None:
                transfer_overheads = _read_transfer_table(home, transfer.OVERHEAD_TABLE,
                                                          transfer.OVERHEAD_SCHEMA)
            ratios = transfer.overhead_lookup(transfer_overheads, self.spec, rule.source)
            source_params = params_from_frame(calibration.filter(mine))
            mult = transfer.overhead_multipliers(grids, source_params, rule,
                                                 {k: v for k, v in ratios.items() if k[0] == framework})
            # ... and its compute / bandwidth / overhead terms by the multipliers fitted on the proxy
            # shapes of the warehouse's transfer_terms table, where they pass the gate (physics/transfer_terms.py)
            if transfer_terms is None and store is not None:
                transfer_terms = _read_transfer_table(home, TERM_TABLE, TERM_SCHEMA)
            shapes = class_shapes(transfer_terms, self.spec, rule.source)
            fitted = term_multipliers(
                shapes.filter(pl.col("framework") == framework) if shapes.height else shapes, source_params, rule)
            self.params = {k: moved_params(rule, p, mult.get((self.data_system, framework, *k)),
                                           fitted.get((self.data_system, framework, *k)))
                           for k, p in self.params.items()}
            # which proxy pairs moved a slice's terms: said beside the answer's provenance
            self._terms_from = {k[2:]: _proxy_pairs(shapes, k[2], k[3], k[4]) for k in fitted}
        self._op_versions: dict[str, list[str]] = {}
        for v, op, _ in self.params:
            self._op_versions.setdefault(op, []).append(v)
        self._op_versions = {op: sort_versions(vs) for op, vs in self._op_versions.items()}
        self._resolved: dict[tuple, _Resolved] = {}
        self._by_args: dict[tuple, _Resolved] = {}  # raw estimate() arguments -> resolution

    def _load_partitions(self, store, framework: str, versions: list[str]):
        """(calibration, grids, build_errors) of every version of this system/backend, each partition
        rebuilt first if stale; SliceBuildError when the system itself could not be modelled."""
        from estimator.derived.partition import SliceBuildError
        from estimator.derived.store import slice_error

        from estimator.lookup.intervals import TABLE as IV_TABLE

        parts = [store.load((self.data_system, framework, v),
                            tables=("sol_calibration", "grids", "build_errors", IV_TABLE)) for v in versions]
        self._iv_loaded = {v: IntervalLookup(p[IV_TABLE]) for v, p in zip(versions, parts)}
        calibration, grids, errors = (pl.concat([p[t] for p in parts], how="vertical_relaxed")
                                      for t in ("sol_calibration", "grids", "build_errors"))
        if reason := slice_error(errors):
            raise SliceBuildError(reason)
        return calibration, grids, errors

    def _build_error(self, op: str, version: str | None = None, **sub_slice) -> None:
        """Raise SliceBuildError when this op (or its sub-slice) could not be modelled (store.py)."""
        if self.build_errors.height:
            from estimator.derived.partition import SliceBuildError
            from estimator.derived.store import slice_error

            errors = self.build_errors if version is None else self.build_errors.filter(pl.col("version") == version)
            if reason := slice_error(errors, op, **sub_slice):
                raise SliceBuildError(reason)

    def interval_note(self, op: str) -> str | None:
        """Why answers of `op` carry no 80% interval, or None when they carry one.

        Set for a transfer to another system without a `transfer_intervals` row for the op: the source's
        own interval model measures how well the source's grids predict the source, which says nothing of
        what the physics does not move to the target (A30 from H200 read '80% in' a band 0.6% wide)."""
        op = canonical_op(op)
        if self.transfer_intervals is None or self.transfer_intervals.covers(op):
            return None
        where = ("the warehouse has no transfer_intervals table" if not self._transfer_table_given
                 else f"the transfer_intervals table has no {op} row for {self.framework}")
        return (f"no 80% interval: {self.system} is answered from {self.data_system}'s data and {where}; the "
                f"source's own interval would claim {self.data_system}'s native precision. Fit the table with "
                f"`perfwh accuracy --fit-transfer-intervals --home WAREHOUSE`")

    # ---- resolution ---------------------------------------------------------------------
    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(sorted(self._op_versions))

    def versions_for(self, op: str) -> list[str]:
        """The versions with data for `op`, oldest first (PEP 440 order)."""
        return list(self._op_versions.get(canonical_op(op), ()))

    def _params_source(self, version: str, op: str, kernel_source: str | None) -> str:
        """The kernel_source whose fit answers: this one if fitted; else the op's 'default' (or first)."""
        if (version, op, kernel_source) in self.params:
            return kernel_source
        sources = sorted(s for v, o, s in self.params if o == op and v == version)
        return "default" if "default" in sources else sources[0]

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
        if op not in self._op_versions:
            self._build_error(op)
            why = ""
            if self.data_system != self.system and self._from_system is None:  # picked by spec, not asked for
                why = (f" ({self.system} has no {self.framework} data of its own and {self.data_system} is the "
                       f"system with data nearest by spec; from_system= / --from picks another)")
            raise KeyError(f"no data or calibration for op {op!r} in {self.data_system}/{self.framework}; "
                           f"ops with data: {', '.join(self.ops)}{why}")
        have = self._op_versions[op]
        if self.pinned_version is not None and self.pinned_version not in have:
            raise VersionError(f"version {self.pinned_version} has no {op} data for {self.data_system}/"
                               f"{self.framework}; versions with {op} data: {', '.join(have)}")
        version = self.pinned_version or have[-1]  # the op's newest, unless a slice match is newer below
        kernel_op = Op.parse(op).kernel_only
        if architecture is not None and architecture not in architectures(family_of(op)) and not kernel_op:
            raise ValueError(f"unknown architecture {architecture!r} for {op}; "
                             f"valid: {', '.join(architectures(family_of(op)))}")
        model = model_for(op, None if kernel_op else architecture)
        want = {"op": op, "kernel_source": kernel_source, "architecture": None if kernel_op else model.architecture,
                "attn_dtype": attn_dtype, "kv_cache_dtype": kv_cache_dtype,
                "gemm_type": None if kernel_op else gemm_type}
        cands = [k for k in self.grids.groups if k[3] == op and (self.pinned_version is None or k[2] == version)]
        notes = []
        exact = [k for k in cands if all(
            want[c] is None and c == "kernel_source" or dict(zip(GROUP_KEYS, k))[c] == want[c]
            for c in ("kernel_source", "architecture", "attn_dtype", "kv_cache_dtype", "gemm_type"))]
        if not exact:  # a precision / architecture of this op that could not be modelled
            self._build_error(op, version, gemm_type=gemm_type, kv_cache_dtype=kv_cache_dtype,
                              architecture=want["architecture"])
        # the attention the query asks for: its kernel_source's, else the op's own (DSA: sparse + indexer).
        # A slice of other attention answers only when no slice of this one exists, and says so below
        want_variant = attention_variant(kernel_source) if family_of(op) == "dsa" else None
        if want_variant is not None:
            exact = [k for k in exact if attention_variant(k[4]) == want_variant]
        if exact:  # the newest version with data for this op and slice
            version = max((k[2] for k in exact), key=version_key)
            key = self._pick_kernel_source([k for k in exact if k[2] == version])
        elif cands:
            cands = [k for k in cands if k[2] == version] or cands
            key = max(cands, key=lambda k: self._similarity(dict(zip(GROUP_KEYS, k)), want, want_variant))
            kd = dict(zip(GROUP_KEYS, key))
            notes += [f"{c}={want[c]}->{kd[c]}" for c in ("architecture", "attn_dtype", "kv_cache_dtype",
                                                             "gemm_type", "kernel_source")
                      if want[c] is not None and kd[c] != want[c]]
        else:
            key = None
        if key is not None and want_variant is not None and attention_variant(key[4]) != want_variant:
            notes.append(f"attention={_variant_text(want_variant)}->{_variant_text(attention_variant(key[4]))} "
                         f"({key[4]}: no {_variant_text(want_variant)} kernel measured for {op} here)")
        if self.data_system != self.system:
            notes.append(transfer.provenance(self.system, self.data_system, self.framework,
                                             key[2] if key else version))
            if key is not None and (pairs := self._terms_from.get((key[2], key[3], key[4]))):
                notes.append(f"terms moved as {pairs} measured (transfer_terms)")
        repl = {}
        if index_topk is not None and family_of(op) == "dsa" and index_topk != model.index_topk:
            repl["index_topk"] = index_topk
            notes.append(f"index_topk={index_topk}<-{model.index_topk}")
        if index_n_heads is not None and family_of(op) == "dsa" and index_n_heads != model.index_n_heads:
            repl["index_n_heads"] = index_n_heads
            notes.append(f"index_n_heads={index_n_heads}<-{model.index_n_heads}")
        if repl:
            model = dataclasses.replace(model, **repl)
        # the kernel_source whose fit answers also picks the SOL model's attention variant
        source = self._params_source(key[2] if key else version, op, key[4] if key else kernel_source)
        params = self.params[(key[2] if key else version, op, source)]
        sol_gemm = "bfloat16" if kernel_op else gemm_type
        res = _Resolved(self.grids.groups.get(key) if key else None,
                        key if key else (self.data_system, self.framework, version, op, kernel_source,
                                         want["architecture"], attn_dtype, kv_cache_dtype, want["gemm_type"]),
                        "; ".join(notes) or None, model, params, sol_gemm, kv_cache_dtype,
                        compile_scalar(op, model, self.spec, params, gemm_type=sol_gemm,
                                       kv_cache_dtype=kv_cache_dtype, kernel_source=source),
                        compile_array(op, model, self.spec, params, gemm_type=sol_gemm,
                                      kv_cache_dtype=kv_cache_dtype, kernel_source=source, dtype=np.float32),
                        (), model.num_attention_heads, model.max_position_embeddings)
        res = dataclasses.replace(res, slice_items=tuple(zip(GROUP_KEYS, res.key)), bounds=group_bounds(res.group))
        self._resolved[ck] = res
        return res

    def _pick_kernel_source(self, keys: list[tuple]) -> tuple:
        """One kernel_source when several match (all of the wanted attention): 'default' if present,
        else the largest grid."""
        if len(keys) == 1:
            return keys[0]
        for k in keys:
            if k[4] == "default":
                return k
        return max(keys, key=lambda k: (sum(sg.ratio.size for sg in self.grids.groups[k].slices.values()), k[4]))

    @staticmethod
    def _similarity(have: dict, want: dict, want_variant: AttentionVariant | None = None) -> tuple:
        """Rank of a candidate slice for a query without an exact match: the attention it runs first
        (the SOL model moves precisions and model dims, not dense MHA into sparse DSA), then the keys."""
        same_attention = want_variant is None or attention_variant(have["kernel_source"]) == want_variant
        return (int(same_attention),) + tuple(
            int(want[c] is None or have[c] == want[c])
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
            for name, value in (("architecture", architecture), ("kernel_source", kernel_source)):
                if value is not None and not isinstance(value, str):
                    raise TypeError(f"{name} must be a string, got {type(value).__name__} {value!r}")
            res = self._resolve(
                op, kernel_source, architecture, FMHAQuantMode.parse(attn_dtype).value,
                KVCacheQuantMode.parse(kv_cache_dtype).value, GEMMQuantMode.parse(gemm_type).value,
                None if index_topk is None else _positive_int("index_topk", index_topk),
                None if index_n_heads is None else _positive_int("index_n_heads", index_n_heads))
            if raw_key is not None:
                self._by_args[raw_key] = res
        if h > res.max_heads or seq + pre > res.max_seq:
            check_model(op, res.model, h, seq, pre, phase_of(op) == "context")
        bd, limit = res.bounds, None
        if bd is not None and (h > bd.heads[1] or h < bd.heads[0] or b > bd.batch[1] or b < bd.batch[0]
                               or seq > bd.seq[1] or seq < bd.seq[0] or seq + pre > bd.context):
            limit = beyond(bd, h, b, seq, pre)
        cal, raw = res.scalar_sol(b, seq, pre, h)
        if res.group is None or limit is not None:
            ratio, code, nbrs = 0.0, interp.SOL, []
        elif method == "nearest":
            lat, cell = nearest_measured(res.group, h, pre, b, seq)
            ratio = math.log2(lat / cal)
            exact = cell == (h, pre, b, seq)
            code = interp.MEASURED if exact else interp.NEAREST
            nbrs = [(cell[0], cell[1], cell[2], cell[3], 1.0, interp.MEASURED)]
        else:
            ratio, code, nbrs = lookup_one(res.group, h, pre, b, seq)
            if math.isnan(ratio):
                ratio, code, nbrs = 0.0, interp.SOL, []
        if res.transferred_from and code < interp.TRANSFERRED:
            code = interp.TRANSFERRED
        latency = cal * 2.0**ratio
        iv = self._iv_by_version.get(res.key[2], self.intervals)
        note = None
        if self.transfer_intervals is not None:  # another system's data: only the transfer table's interval
            if self.transfer_intervals.covers(op):
                lo, hi, err = self.transfer_intervals.bounds(op, latency)
            else:
                lo = hi = err = math.nan
                note = self._notes.get(op) or self._notes.setdefault(op, self.interval_note(op))
        elif iv.cells:
            lo, hi, err = iv.bounds(op, _IV_CLASS[code], distance_one(res.group, h, pre, b, seq), latency)
        else:
            lo = hi = err = math.nan
        # positional: (latency_ms, source, op, system, framework, version, sol_ms, raw_sol_ms,
        # log2_ratio, neighbour_cells, slice, transferred_from, method, limit, low_ms, high_ms,
        # expected_error_pct, interval_note)
        return Estimate(latency, _SOURCE_ENUM[code], op, self.system, self.framework, res.key[2], cal, raw,
                        ratio, nbrs, res.slice_items, res.transferred_from, method, limit, lo, hi, err, note)

    @staticmethod
    def _seq_arg(op: str, s, isl, kv_len) -> int:
        if isl is None and kv_len is None and type(s) is int and 0 < s <= MAX_INT:
            return s
        name = seq_column(op)
        given = {"s": s, "isl": isl, "kv_len": kv_len}
        present = [n for n, v in given.items() if v is not None]
        if len(present) != 1 or present[0] not in ("s", name):
            raise ValueError(f"{op} takes its sequence as s= or {name}= (exactly one); got "
                             f"{', '.join(f'{n}={given[n]}' for n in present) or 'none'}")
        return _positive_int(present[0], given[present[0]])


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
