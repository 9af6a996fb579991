"""The vectorised estimate of `PerfDatabase` over a frame of points (float32 arithmetic)."""

from __future__ import annotations

import numpy as np
import polars as pl

from warehouse.schema import phase_of

from estimator.grids import interp
from estimator.common import FMHAQuantMode, GEMMQuantMode, KVCacheQuantMode
from estimator.lookup.engine import estimate_group
from estimator.lookup.distance import distance_many
from estimator.lookup.limits import MAX_INT, OutOfRangeError, beyond_many, check_model
from estimator.lookup.query import _CAT_COLUMNS, _INT_OPTIONS, _IV_CLASS_ARR, _SOURCE_NAMES, _positive_int, canonical_op


OUTPUT_COLUMNS = ("latency_ms", "source", "sol_ms", "version", "low_ms", "high_ms")  # what estimate_many adds


class ManyEstimates:
    """`PerfDatabase.estimate_many`: the vectorised path (one resolution per distinct key)."""

    # ---- vectorised ------------------------------------------------------------------------
    def estimate_many(self, op: str, frame: pl.DataFrame, **defaults) -> pl.DataFrame:
        """`frame` plus latency_ms, source, sol_ms, version, low_ms and high_ms (80% interval)
        columns, vectorised (float32 arithmetic: values agree with `estimate` to ~1e-6 relative).
        low_ms / high_ms are NaN where `interval_note(op)` says why (a transfer without its table).

        Columns: batch_size, isl (context) or kv_len (generation) (or seq_len), num_heads,
        optional prefix (a missing column means 0); optional columns gemm_type, kv_cache_dtype,
        attn_dtype, architecture, kernel_source, index_topk, index_n_heads. A column missing as
        a whole takes the keyword in `defaults`, else the same default as `estimate`; inside a
        column every value is validated as `estimate` validates it, and a null or empty value
        is an error naming its row (0-based) and column. The limits of docs/limits.md apply
        point by point: a refused point fails the call (naming its row), a point past the
        measured range gets source `sol`. Extra columns are kept; a frame that already has an output
        column (a measured `latency_ms`, say) or both a sequence column and `seq_len` is refused.
        """
        op = canonical_op(op)
        if not isinstance(frame, pl.DataFrame):
            raise TypeError(f"estimate_many({op}) takes a polars DataFrame of points, got {type(frame).__name__}"
                            + (" (collect() it first)" if isinstance(frame, pl.LazyFrame) else ""))
        context = phase_of(op) == "context"
        seq_cols = [c for c in (("isl" if context else "kv_len"), "seq_len") if c in frame.columns]
        if len(seq_cols) > 1:  # which one answers would be a silent choice
            raise ValueError(f"estimate_many({op}) got both {seq_cols[0]} and seq_len columns; keep one")
        clash = [c for c in OUTPUT_COLUMNS if c in frame.columns]
        if clash:  # the output would overwrite them (a measured latency_ms replaced by the estimate)
            raise ValueError(f"estimate_many({op}) writes column(s) {', '.join(clash)}, which the frame already "
                             f"has; rename them (e.g. latency_ms -> measured_ms)")
        seq_col = seq_cols[0] if seq_cols else None
        missing = [c for c in ("batch_size", "num_heads") if c not in frame.columns]
        if seq_col is None or missing:
            raise ValueError(f"estimate_many({op}) needs columns batch_size, num_heads and "
                             f"{'isl' if context else 'kv_len'} (or seq_len); missing: "
                             f"{', '.join(missing + ([] if seq_col else ['isl' if context else 'kv_len']))}")
        unknown = set(defaults) - set(_CAT_COLUMNS) - set(_INT_OPTIONS)
        if unknown:
            raise ValueError(f"unknown estimate_many options: {', '.join(sorted(unknown))}")
        for name in _INT_OPTIONS:
            if defaults.get(name) is not None:
                defaults[name] = _positive_int(name, defaults[name])
        n = frame.height
        b = self._int_column(frame, "batch_size", positive=True)
        h = self._int_column(frame, "num_heads", positive=True)
        seq = self._int_column(frame, seq_col, positive=True)
        pre = (self._int_column(frame, "prefix", positive=False) if "prefix" in frame.columns
               else np.zeros(n, dtype=np.float32))
        if not context and np.any(pre != 0):
            raise ValueError(f"prefix applies to context ops only; {op} got non-zero prefix in row "
                             f"{int(np.flatnonzero(pre != 0)[0])}")
        for name in ("architecture", "kernel_source"):
            if defaults.get(name) is not None and not isinstance(defaults[name], str):
                raise TypeError(f"{name} must be a string, got {type(defaults[name]).__name__} {defaults[name]!r}")
        dtype = {k: "bfloat16" if defaults.get(k) is None else defaults[k]  # None: the default; '' is refused
                 for k in ("gemm_type", "kv_cache_dtype", "attn_dtype")}
        cat_defaults = {"gemm_type": GEMMQuantMode.parse(dtype["gemm_type"]).value,
                        "kv_cache_dtype": KVCacheQuantMode.parse(dtype["kv_cache_dtype"]).value,
                        "attn_dtype": FMHAQuantMode.parse(dtype["attn_dtype"]).value,
                        "architecture": defaults.get("architecture"), "kernel_source": defaults.get("kernel_source"),
                        "index_topk": defaults.get("index_topk"), "index_n_heads": defaults.get("index_n_heads")}
        cats = [c for c in _CAT_COLUMNS if c in frame.columns]
        for c in cats:
            self._no_blanks(frame, c)
        work = {c: frame[c] for c in cats}
        for c in _INT_OPTIONS:
            if c in frame.columns:
                work[c] = pl.Series(c, self._int_column(frame, c, positive=True).astype(np.int64))
                cats.append(c)
        latency = np.empty(n)
        sol_ms = np.empty(n)
        code = np.empty(n, dtype=np.int8)
        q_lo, q_hi = np.full(n, np.nan), np.full(n, np.nan)
        vcode = np.zeros(n, dtype=np.uint32)
        vindex = {v: i for i, v in enumerate(self._all_versions)}
        if cats:
            groups = pl.DataFrame(work).with_row_index("_row").group_by(cats, maintain_order=True)
            parts = [(dict(zip(cats, key)), sub["_row"].to_numpy()) for key, sub in groups]
        else:
            parts = [({}, None)] if n else []  # no points: no lookup (the empty result keeps every column)
        for values, rows in parts:
            cat = {**cat_defaults, **values}
            first = 0 if rows is None else int(rows[0])
            try:
                for c, enum in (("gemm_type", GEMMQuantMode), ("kv_cache_dtype", KVCacheQuantMode),
                                ("attn_dtype", FMHAQuantMode)):
                    cat[c] = enum.parse(cat[c]).value
                res = self._resolve(op, cat["kernel_source"], cat["architecture"], cat["attn_dtype"],
                                    cat["kv_cache_dtype"], cat["gemm_type"],
                                    None if cat["index_topk"] is None else int(cat["index_topk"]),
                                    None if cat["index_n_heads"] is None else int(cat["index_n_heads"]))
            except ValueError as exc:
                raise type(exc)(f"row {first}: {exc}") from None
            sel = slice(None) if rows is None else rows
            bs, sq, hs, ps = b[sel], seq[sel], h[sel], pre[sel]
            self._check_model_many(op, res, hs, sq, ps, context, rows)
            lat, cd, sm = estimate_group(
                res.group, op, res.model, self.spec, res.params, gemm_type=res.gemm_type,
                kv_cache_dtype=res.kv_cache_dtype, batch=bs, isl=sq if context else 1.0, prefix=ps,
                kv_len=0.0 if context else sq, num_heads=hs, transferred=res.transferred_from is not None,
                sol_fn=res.array_sol, dtype=np.float32)
            if res.bounds is not None:
                far = beyond_many(res.bounds, hs, bs, sq, ps)
                if far.any():
                    lat = np.where(far, sm, lat)
                    cd = np.where(far, interp.SOL, cd)
            latency[sel] = lat
            code[sel] = cd
            sol_ms[sel] = sm
            vcode[sel] = vindex[res.key[2]]
            iv = self._iv_by_version.get(res.key[2], self.intervals)
            if self.transfer_intervals is not None:  # another system's data: NaN without a row (interval_note)
                q_lo[sel], q_hi[sel], _ = self.transfer_intervals.quantiles(op)
            elif iv.cells:
                dist = distance_many(res.group, hs, ps, bs, sq)
                q_lo[sel], q_hi[sel], _ = iv.quantiles_many(op, _IV_CLASS_ARR[cd], dist)
        source = _SOURCE_NAMES.gather(code.astype(np.uint32))
        version = pl.Series("version", self._all_versions, dtype=pl.Enum(self._all_versions)).gather(vcode)
        return frame.with_columns(pl.Series("latency_ms", latency), source, pl.Series("sol_ms", sol_ms), version,
                                  pl.Series("low_ms", latency * np.exp2(q_lo)),
                                  pl.Series("high_ms", latency * np.exp2(q_hi)))

    @staticmethod
    def _check_model_many(op, res, heads, seq, prefix, context, rows) -> None:
        """Refuse (naming the first row) points past the model's heads or context length."""
        bad = (heads > res.max_heads) | ((seq + prefix) > res.max_seq)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            try:
                check_model(op, res.model, int(heads[i]), int(seq[i]), int(prefix[i]), context)
            except OutOfRangeError as exc:
                raise OutOfRangeError(f"row {i if rows is None else int(rows[i])}: {exc}") from None

    @staticmethod
    def _no_blanks(frame: pl.DataFrame, name: str) -> None:
        col = frame[name]
        text = col.dtype in (pl.String, pl.Null) or isinstance(col.dtype, (pl.Categorical, pl.Enum))
        if name in ("architecture", "kernel_source") and not text:
            raise ValueError(f"column {name} must hold strings; it has type {col.dtype}")
        blank = col.is_null()
        if col.dtype == pl.String:
            blank = blank | (col.str.strip_chars() == "")
        if blank.any():
            i = int(blank.arg_true()[0])
            raise ValueError(f"row {i}: column {name} is empty (leave the whole column out to use its default)")

    @staticmethod
    def _int_column(frame: pl.DataFrame, name: str, *, positive: bool) -> np.ndarray:
        col = frame[name]
        if col.null_count():
            i = int(col.is_null().arg_true()[0])
            raise ValueError(f"row {i}: column {name} is empty (it must hold "
                             f"{'positive' if positive else 'non-negative'} integers)")
        if col.dtype.is_integer():
            low, high = col.min(), col.max()
            if low is None or ((low > 0 if positive else low >= 0) and high <= MAX_INT):
                return col.to_numpy().astype(np.float32)
        elif not col.dtype.is_numeric():
            raise ValueError(f"column {name} must hold integers; it has type {col.dtype}")
        arr = col.to_numpy().astype(np.float64, copy=False)
        bad = ~np.isfinite(arr) | (arr != np.floor(arr)) | ((arr <= 0) if positive else (arr < 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            kind = "positive" if positive else "non-negative"
            raise ValueError(f"row {i}: column {name} must hold {kind} integers; it has {col[i]!r}")
        over = arr > MAX_INT
        if over.any():
            i = int(np.flatnonzero(over)[0])
            raise OutOfRangeError(f"row {i}: column {name} has {col[i]!r}, above the largest supported value "
                                  f"{MAX_INT} (2^31-1)")
        return arr.astype(np.float32)
