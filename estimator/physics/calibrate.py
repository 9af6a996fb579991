"""Calibrated SOL: fitted kernel-group efficiencies and a per-op overhead.

    t = (overhead^p + S^p)^(1/p),  S = SUM_k max(F_k/(peak*ef_g), B_k/(BW*eb_g))

One fit per (system, framework, version, op, kernel_source), by least squares on
log(pred/measured). The overhead does not simply add to the kernel time: the
measured modules are flat at small shapes and then grow linearly, as if host
work and GPU work overlap, so they combine through a p-norm whose p is
fitted too (p = 1 is a plain sum, large p a max).

The fitted parameters are data (a long frame, written to the warehouse as
`sol_calibration`); `CalibrationParams` is the in-memory form. Its attention
launch rule is not fitted: it follows from the keys (`launch.launch_rule`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from estimator.physics import sol
from estimator.physics.launch import Launch, launch_rule
from estimator.slices import group_rows, model_for, points_shape
from estimator.physics.specs import SystemSpec, load_system

METHOD = "calibrated-sol-v8"  # v8: at most 80 evaluations (v7: the collector kernel's launch waves, physics/launch.py)
CAL_KEYS = ("system", "framework", "version", "op", "kernel_source")
CALIBRATION_SCHEMA: dict[str, pl.DataType] = {
    "system": pl.String(),
    "framework": pl.String(),
    "version": pl.String(),
    "op": pl.String(),
    "kernel_source": pl.String(),
    "param": pl.String(),  # eff_compute | eff_bandwidth | overhead_ms | combine_p
    "group": pl.String(),  # kernel group for efficiencies, "" otherwise
    "value": pl.Float64(),
    "n_points": pl.Int64(),
    "fit_median_pct": pl.Float64(),
    "fit_p90_pct": pl.Float64(),
    "method": pl.String(),
}
_DEFAULT_EFF = 0.5


@dataclass(frozen=True)
class CalibrationParams:
    """Fitted constants of one (system, framework, version, op, kernel_source)."""

    eff: dict[str, tuple[float, float]] = field(default_factory=dict)  # group -> (compute, bandwidth)
    overhead_ms: float = 0.0
    combine_p: float = 1.0
    launch: str | None = None  # attention launch rule of the measuring collector (physics/launch.py)

    def efficiency(self, group: str) -> tuple[float, float]:
        return self.eff.get(group, (_DEFAULT_EFF, _DEFAULT_EFF))

    def launch_on(self, system: SystemSpec) -> Launch | None:
        """The attention launch on `system`'s SMs, or None (plain SOL)."""
        return None if self.launch is None else Launch(self.launch, system.sm_count)


def points_launch(points: pl.DataFrame) -> str | None:
    """The one attention launch rule of `points` (one op, framework and version); None without
    framework / version columns. ValueError when the rows mix rules: they cannot share one fit."""
    if points.height == 0 or not {"framework", "version", "op"} <= set(points.columns):
        return None
    rules = {launch_rule(fw, v, op) for fw, v, op in points.select("framework", "version", "op").unique().iter_rows()}
    if len(rules) > 1:
        raise ValueError(f"points mix attention launch rules {sorted(map(str, rules))}: fit them apart")
    return rules.pop()


def kernel_times(ks: list[sol.Kernel], system: SystemSpec, n: int):
    """(compute ms, bandwidth ms, group names) arrays of shape (kernels, n) at 100% efficiency."""
    ct = np.empty((len(ks), n))
    bt = np.empty((len(ks), n))
    for j, k in enumerate(ks):
        peak = system.peak_fp8_flops_per_s if k.fp8 else system.peak_bf16_flops_per_s
        ct[j] = np.broadcast_to(np.asarray(k.flops, dtype=float) / peak * 1e3, n)
        bt[j] = np.broadcast_to(np.asarray(k.bytes, dtype=float) / system.hbm_bytes_per_s * 1e3, n)
    return ct, bt, [k.group for k in ks]


def combine(overhead_ms, kernel_sum_ms, p):
    """p-norm of overhead and kernel time (floats or arrays), scaled by the larger term so that
    large p never overflows."""
    if p == 1.0:
        return overhead_ms + kernel_sum_ms
    m = sol._maximum(overhead_ms, kernel_sum_ms)
    return m * ((overhead_ms / m) ** p + (kernel_sum_ms / m) ** p) ** (1.0 / p)


def calibrated_ms(ks: list[sol.Kernel], system: SystemSpec, params: CalibrationParams):
    """Calibrated SOL latency of the given kernels, in ms (scalar or array)."""
    total = 0.0
    bf16, fp8, bw = system.peak_bf16_flops_per_s, system.peak_fp8_flops_per_s, system.hbm_bytes_per_s
    for k in ks:
        ef, eb = params.efficiency(k.group)
        a = k.flops / ((fp8 if k.fp8 else bf16) * ef)
        b = k.bytes / (bw * eb)
        total = total + sol._maximum(a, b)
    return combine(params.overhead_ms, total * 1e3, params.combine_p)


def design_times(points: pl.DataFrame, system: SystemSpec):
    """Kernel time matrices for every row of one op's points (rows may mix slices)."""
    n = points.height
    op = points["op"][0]
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]] = []
    keys = ["kernel_source", "architecture", "gemm_type", "kv_cache_dtype"]
    shape = points_shape(points)
    rule = points_launch(points)
    launch = None if rule is None else Launch(rule, system.sm_count)
    for (source, arch, gemm, kv), rows in group_rows(points, keys):
        ks = sol.kernels(op, model_for(op, arch), gemm_type=gemm or "bfloat16", kv_cache_dtype=kv,
                         kernel_source=source, launch=launch, **{k: v[rows] for k, v in shape.items()})
        ct, bt, groups = kernel_times(ks, system, rows.size)
        blocks.append((rows, ct, bt, groups))
    groups = sorted({g for *_, gs in blocks for g in gs})
    gi = {g: i for i, g in enumerate(groups)}
    width = max(len(b[3]) for b in blocks)
    ct_all = np.zeros((width, n))
    bt_all = np.zeros((width, n))
    g_all = np.zeros((width, n), dtype=np.int64)
    for rows, ct, bt, gs in blocks:
        k = len(gs)
        ct_all[:k, rows] = ct
        bt_all[:k, rows] = bt
        g_all[:k, rows] = np.array([gi[g] for g in gs])[:, None]
    return ct_all, bt_all, g_all, groups


def _group_bins(gidx: np.ndarray, ng: int) -> np.ndarray:
    """Flat (group, row) bin of every (kernel, row) entry, for `_jacobian`'s per-group sums."""
    return (gidx * gidx.shape[1] + np.arange(gidx.shape[1])).ravel()


class _Terms:
    """The kernel-time terms a / b (compute and bandwidth time at the efficiencies of theta) of the
    last theta asked for: the solver evaluates the residuals at a point and then, when it accepts
    the step, the Jacobian at the same point, so the second call reuses the first's terms (the
    same arrays, so `_predict` and `_jacobian` give the values they gave when each computed them)."""

    def __init__(self, ct, bt, gidx, ng):
        self.ct, self.bt, self.gidx, self.ng = ct, bt, gidx, ng
        self.key = None
        self.ab = None

    def __call__(self, theta):
        key = theta.tobytes()
        if key != self.key:
            ng = self.ng
            ef = np.exp(theta[:ng])
            eb = np.exp(theta[ng : 2 * ng])
            self.ab = (self.ct / ef[self.gidx], self.bt / eb[self.gidx])
            self.key = key
        return self.ab


def _jacobian(theta, ct, bt, gidx, ng, bins=None, terms=None):
    """d log(pred) / d theta, analytically (the fit's cost is then a few evaluations per step).

    Per-group kernel sums come from one `np.bincount` over (group, row) bins instead
    of a masked sum per group: bincount adds the entries in kernel order, as the
    masked column sum did (its other terms were zeros), so the values are identical.
    """
    bins = _group_bins(gidx, ng) if bins is None else bins
    overhead = np.exp(theta[2 * ng])
    p = 1.0 + np.exp(theta[2 * ng + 1])
    if terms is None:
        a, b = ct / np.exp(theta[:ng])[gidx], bt / np.exp(theta[ng : 2 * ng])[gidx]
    else:
        a, b = terms(theta)
    compute_bound = a >= b
    s = np.where(compute_bound, a, b).sum(axis=0)
    s = np.maximum(s, 1e-300)
    m = np.maximum(overhead, s)  # scale by the larger term: no overflow at large p
    r_o, r_s = (overhead / m) ** p, (s / m) ** p
    big = r_o + r_s
    ds = r_s / s / big  # d log pred / d S
    n = ct.shape[1]
    jac = np.empty((n, 2 * ng + 2))
    ac = np.where(compute_bound, a, 0.0)
    bb = np.where(compute_bound, 0.0, b)
    sum_c = np.bincount(bins, weights=ac.ravel(), minlength=ng * n).reshape(ng, n)
    sum_b = np.bincount(bins, weights=bb.ravel(), minlength=ng * n).reshape(ng, n)
    jac[:, :ng] = -ds[:, None] * sum_c.T
    jac[:, ng : 2 * ng] = -ds[:, None] * sum_b.T
    jac[:, 2 * ng] = r_o / big
    dlogpred_dp = -(p * np.log(m) + np.log(big)) / p**2 + (r_o * np.log(overhead) + r_s * np.log(s)) / (p * big)
    jac[:, 2 * ng + 1] = dlogpred_dp * (p - 1.0)
    return jac


def _predict(theta, ct, bt, gidx, ng, terms=None):
    overhead = np.exp(theta[2 * ng])
    p = 1.0 + np.exp(theta[2 * ng + 1])
    if terms is None:
        a, b = ct / np.exp(theta[:ng])[gidx], bt / np.exp(theta[ng : 2 * ng])[gidx]
    else:
        a, b = terms(theta)
    s = np.maximum(a, b).sum(axis=0)
    return combine(overhead, s, p)


MAX_FIT_ROWS = 8000  # larger tables are fitted on an even subsample (same fit, bounded time)
# Well-posed tables converge in ~20-40 evaluations. 11-13 of the 115 fits of the whole published
# corpus (SGLang DSA context, 8-25% median fit error) crawl along a valley of overhead and combine_p
# instead: 200 evaluations cost 55% of all fitting CPU, and 1,000 lowered one's cost by 0.3%. At 80
# their fit medians move by at most 0.45 point, and the path stays stable under 1e-12 noise.
MAX_NFEV = 80
RIDGE = 1e-8  # prior weight per point, in units of a squared log-residual: negligible where data bind a parameter
TOL = 1e-10  # run the solver to the optimum, not to where the cost stops falling by 1e-8


def fit_op(points: pl.DataFrame, system: SystemSpec,
           start: CalibrationParams | None = None) -> tuple[CalibrationParams, np.ndarray]:
    """Fit one op's parameters; returns them and the fitted relative errors (%) of the rows used.

    `start`: parameters to start from (and to pull the unbound ones towards) instead of the
    defaults; a cross-validation fold starts from the fit on all of its slice's points, which it
    differs from by the held-out tenth (`estimator.accuracy.interval_fit`)."""
    if points.height > MAX_FIT_ROWS:
        points = points.sort(["batch_size", "isl", "kv_len", "prefix", "num_heads"], nulls_last=True).gather_every(
            -(-points.height // MAX_FIT_ROWS))
    ct, bt, gidx, groups = design_times(points, system)
    y = points["latency_ms"].to_numpy()
    ng = len(groups)
    theta0 = np.concatenate([np.full(2 * ng, np.log(_DEFAULT_EFF)), [np.log(np.min(y) * 0.5), 0.0]])
    if start is not None:
        theta0 = _theta_of(start, groups, theta0)
    lo = np.concatenate([np.full(2 * ng, np.log(1e-3)), [np.log(1e-4), -8.0]])
    hi = np.concatenate([np.full(2 * ng, np.log(50.0)), [np.log(1e3), 4.0]])
    bins = _group_bins(gidx, ng)
    # Imported here: scipy.optimize costs ~1.5 s of start-up that lookups never need.
    from scipy.optimize import least_squares

    terms = _Terms(ct, bt, gidx, ng)
    # A weak prior pulling every parameter towards theta0, and the solver run to convergence: without
    # them a parameter that no point binds (the compute efficiency of an always memory-bound group)
    # lies along a flat direction, and where the solver stopped on it depended on the last bits of
    # the floating-point sums. Latencies moved by 1e-12 moved such parameters of the 19 published H200
    # fits by a factor of 12 (median; up to 4,000), and an AVX2 CPU moved extrapolated answers by up
    # to 7% against an AVX-512 one. With both, the same perturbation moves no parameter by more than
    # 5e-11 over the corpus's 115 fits (tests/estimator/physics/test_calibrate_stable.py).
    ridge = np.sqrt(RIDGE * y.size)
    theta_start = np.clip(theta0, lo, hi)

    def residuals(th):
        return np.concatenate([np.log(_predict(th, ct, bt, gidx, ng, terms) / y), ridge * (th - theta_start)])

    def jacobian(th):
        return np.vstack([_jacobian(th, ct, bt, gidx, ng, bins, terms), ridge * np.eye(th.size)])

    res = least_squares(residuals, theta_start, jac=jacobian, bounds=(lo, hi), method="trf", max_nfev=MAX_NFEV,
                        ftol=TOL, xtol=TOL, gtol=TOL)
    th = res.x
    params = CalibrationParams(
        eff={g: (float(np.exp(th[i])), float(np.exp(th[ng + i]))) for i, g in enumerate(groups)},
        overhead_ms=float(np.exp(th[2 * ng])),
        combine_p=float(1.0 + np.exp(th[2 * ng + 1])),
        launch=points_launch(points),
    )
    err = np.abs(_predict(th, ct, bt, gidx, ng) / y - 1.0) * 100.0
    return params, err


def _theta_of(params: CalibrationParams, groups, default: np.ndarray) -> np.ndarray:
    """The solver's vector (log efficiencies, log overhead, log(p - 1)) of `params`; a group that
    `params` lacks keeps its `default` entries."""
    ng = len(groups)
    theta = default.copy()
    for i, g in enumerate(groups):
        if g in params.eff:
            theta[i], theta[ng + i] = np.log(params.eff[g][0]), np.log(params.eff[g][1])
    theta[2 * ng] = np.log(max(params.overhead_ms, 1e-300))
    theta[2 * ng + 1] = np.log(max(params.combine_p - 1.0, 1e-300))
    return theta


def single_blas_thread():
    """A context that runs the fits with one BLAS thread, restoring the previous count afterwards.

    The fits' matrices are small (<= MAX_FIT_ROWS x ~20): threading gains nothing,
    and on a shared 2-core machine OpenBLAS threads that wait for a busy core made
    each SVD of the trust-region solver ~20x slower (calibration 4 s -> 20-30 s).
    scipy.optimize is imported first: threadpoolctl limits only the BLAS libraries
    already loaded, so before this import the first fits of a process ran on every
    core while later ones ran on one, and an ill-posed parameter (a compute
    efficiency that no point binds) came out differently depending on which
    partition a process built first.
    """
    import scipy.optimize  # noqa: F401  (loads OpenBLAS so that the limit applies to it)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def calibrate(points: pl.DataFrame, start: dict[tuple, CalibrationParams] | None = None) -> pl.DataFrame:
    """Fit every (system, framework, version, op) of `points`; a CALIBRATION_SCHEMA frame.
    `start`: per CAL_KEYS key, the parameters to start that fit from (`fit_op`)."""
    with single_blas_thread():
        return _calibrate(points, start or {})


def _calibrate(points: pl.DataFrame, start: dict[tuple, CalibrationParams]) -> pl.DataFrame:
    rows: list[dict] = []
    for key, sub in points.group_by(list(CAL_KEYS), maintain_order=True):
        params, err = fit_op(sub, load_system(key[0]), start.get(tuple(key)))
        rows += rows_of_fit(sub, params, err)
    return pl.DataFrame(rows, schema=CALIBRATION_SCHEMA).sort(*CAL_KEYS, "param", "group")


def rows_of_fit(sub: pl.DataFrame, params: CalibrationParams, err: np.ndarray) -> list[dict]:
    """CALIBRATION_SCHEMA rows of one (system, framework, version, op, kernel_source) fit."""
    base = {k: sub[k][0] for k in CAL_KEYS}
    base.update(n_points=sub.height, fit_median_pct=float(np.median(err)),
                fit_p90_pct=float(np.quantile(err, 0.9)), method=METHOD)
    rows = []
    for g, (ef, eb) in sorted(params.eff.items()):
        rows.append({**base, "param": "eff_compute", "group": g, "value": ef})
        rows.append({**base, "param": "eff_bandwidth", "group": g, "value": eb})
    rows.append({**base, "param": "overhead_ms", "group": "", "value": params.overhead_ms})
    rows.append({**base, "param": "combine_p", "group": "", "value": params.combine_p})
    return rows


def params_from_frame(calibration: pl.DataFrame) -> dict[tuple, CalibrationParams]:
    """{(system, framework, version, op, kernel_source): CalibrationParams} from a calibration frame."""
    out: dict[tuple, CalibrationParams] = {}
    for key, sub in calibration.group_by(list(CAL_KEYS), maintain_order=True):
        eff: dict[str, list[float]] = {}
        overhead, p = 0.0, 1.0
        for param, group, value in sub.select("param", "group", "value").iter_rows():
            if param == "eff_compute":
                eff.setdefault(group, [_DEFAULT_EFF, _DEFAULT_EFF])[0] = value
            elif param == "eff_bandwidth":
                eff.setdefault(group, [_DEFAULT_EFF, _DEFAULT_EFF])[1] = value
            elif param == "overhead_ms":
                overhead = value
            elif param == "combine_p":
                p = value
            else:
                raise ValueError(f"unknown calibration param {param!r}")
        out[tuple(key)] = CalibrationParams({g: (v[0], v[1]) for g, v in eff.items()}, overhead, p,
                                            launch_rule(key[1], key[2], key[3]))
    return out
