"""Raw-log writers: collector CSV (``<table>[.<tag>].txt``) and JSONL run log
(``<table>[.<tag>].jsonl``) under ``<root>/<system>/perfwh/<version>/`` (the version follows the
MLA decode implementation and the generation prologue: ``version_for``; JSONL rows name the prologue).

Both files are appended one measurement at a time and flushed, so a crash
loses at most the shape in flight; ``done_keys`` reads every JSONL of a table
back (all tags) so a re-run resumes where the last one stopped. A run with a
tag writes new files and leaves earlier ones byte for byte as they were (the
warehouse keys raw logs by content hash: an appended file would be a new,
overlapping source). Failed shapes go to ``.failures.jsonl`` (one object per
failure: the shape, ``status: "failed"``, ``failure_kind``, ``error``); the
warehouse's folder scan skips dot-files, so they never become bad rows.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from . import FRAMEWORK, VERSION, version_for
from .config import MODELS, OPS
from .sweep import Shape

CSV_HEADER = ("framework,version,device,op_name,kernel_source,model,architecture,mla_dtype,"
              "kv_cache_dtype,gemm_type,num_heads,batch_size,isl,tp_size,step,latency")
SCHEMA = "perfwh.run/1"
KERNEL_SOURCE = {"dsa": "triton_sparse", "mla_generation": "triton_decode", "mla_context": "torch_sdpa",
                 "mla_generation_kernel": "triton_decode", "mla_context_kernel": "torch_sdpa"}
FLASHINFER_SOURCE = "flashinfer_mla"  # MLA decode through FlashInfer (mla_attn.DENSE_IMPL = "flashinfer")
FLASHMLA_SOURCE = "flashmla"  # MLA decode through FlashMLA's shim (mla_attn.DENSE_IMPL = "flashmla")


def gemm_column(shape: Shape) -> str | None:
    """Kernel-only rows have no GEMM (blank, as in the published kernel tables)."""
    return None if shape.op.endswith("_kernel") else shape.gemm_type


def kernel_source(shape: Shape, dense_impl: str = "decode") -> str:
    if shape.family == "dsa":
        return KERNEL_SOURCE["dsa"]
    if dense_impl == "flashinfer" and shape.op in ("mla_generation", "mla_generation_kernel"):
        from .kernels.fi_mla import serves

        if serves(shape.kv_cache_dtype):
            return FLASHINFER_SOURCE
    if dense_impl == "flashmla" and shape.op in ("mla_generation", "mla_generation_kernel"):
        from .kernels.flashmla import serves as fmla_serves

        if fmla_serves(shape.kv_cache_dtype):
            return FLASHMLA_SOURCE
    return KERNEL_SOURCE[shape.op]


def out_dir(root: Path, system: str, version: str = VERSION) -> Path:
    return Path(root) / system / FRAMEWORK / version


def utcnow() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


FAILURES = ".failures.jsonl"


class RawLogWriter:
    def __init__(self, root: Path, system: str, device: str, run_id: str, env: dict, tag: str | None = None,
                 dense_impl: str = "decode", prologue: str = "eager"):
        if tag is not None and (not tag or not all(c.isalnum() or c in "-_" for c in tag)):
            raise ValueError(f"file tag {tag!r}: use letters, digits, '-' and '_' only")
        self.version, self.dense_impl, self.prologue = version_for(dense_impl, prologue), dense_impl, prologue
        self.dir = out_dir(root, system, self.version)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.system, self.device, self.run_id, self.env, self.tag = system, device, run_id, env, tag
        self._reconciled: set[str] = set()

    def paths(self, op: str) -> tuple[Path, Path]:
        stem = OPS[op][0] + (f".{self.tag}" if self.tag else "")
        return self.dir / f"{stem}.txt", self.dir / f"{stem}.jsonl"

    def write_failure(self, shape: Shape, kind: str, error: str, extra: dict | None = None) -> None:
        row = {k: v for k, v in self.json_row(shape, float("nan"), [], None).items()
               if k not in ("latency_ms", "samples_ms", "gpu_clock_mhz")}
        row.update(status="failed", failure_kind=kind, error=error)
        if extra:
            row.update(extra)
        with open(self.dir / FAILURES, "a") as f:
            f.write(json.dumps(row, separators=(",", ":")) + "\n")

    def csv_row(self, shape: Shape, latency_ms: float) -> str:
        model, arch = MODELS[shape.family]
        op_name = OPS[shape.op][1]
        step = shape.prefix
        return ",".join(str(v) for v in (
            FRAMEWORK, self.version, self.device, op_name, kernel_source(shape, self.dense_impl), model, arch,
            "bfloat16",
            shape.kv_cache_dtype, gemm_column(shape) or "", shape.num_heads, shape.batch_size, shape.isl, 1, step,
            f"{latency_ms:.5f}"))

    def json_row(self, shape: Shape, latency_ms: float, samples: list[float], clock: float | None,
                 extra: dict | None = None) -> dict:
        model, arch = MODELS[shape.family]
        row = {
            "schema": SCHEMA, "run_id": self.run_id, "timestamp": utcnow(), "device": self.device,
            "system": self.system, "framework": FRAMEWORK, "version": self.version, "op": shape.op,
            "kernel_source": kernel_source(shape, self.dense_impl), "model": model, "architecture": arch,
            "attn_dtype": "bfloat16", "kv_cache_dtype": shape.kv_cache_dtype, "gemm_type": gemm_column(shape),
            "num_heads": shape.num_heads, "batch_size": shape.batch_size, "isl": shape.isl,
            # the code around the attention kernel: context rows are always measured with the eager prologue
            "prologue": self.prologue if shape.phase == "generation" and not shape.op.endswith("_kernel")
            else "eager",
        }
        if shape.phase == "context":
            row["prefix"] = shape.prefix
        else:
            row["kv_len"] = shape.prefix
        row.update({"tp_size": 1, "latency_ms": round(latency_ms, 5),
                    "samples_ms": [round(x, 5) for x in samples], "gpu_clock_mhz": clock, "env": self.env})
        if extra:
            row.update(extra)
        return row

    def write(self, shape: Shape, latency_ms: float, samples: list[float], clock: float | None,
              extra: dict | None = None) -> None:
        csv_p, js_p = self.paths(shape.op)
        if shape.op not in self._reconciled:
            _trim_csv_to_jsonl(csv_p, js_p)
            self._reconciled.add(shape.op)
        new = not csv_p.exists() or csv_p.stat().st_size == 0
        with open(csv_p, "a") as f:
            f.write(_line_end(csv_p))
            if new:
                f.write(CSV_HEADER + "\n")
            f.write(self.csv_row(shape, latency_ms) + "\n")
        with open(js_p, "a") as f:
            f.write(_line_end(js_p) + json.dumps(self.json_row(shape, latency_ms, samples, clock, extra),
                                                 separators=(",", ":")) + "\n")


def _trim_csv_to_jsonl(csv_p: Path, js_p: Path) -> None:
    """Drop CSV rows past the JSONL's whole rows before a resumed run appends. Each row goes to the CSV,
    then to the JSONL, so a run killed between the two (or mid-way through the JSONL line) leaves one CSV
    row whose shape the resume measures again; without this the CSV mirror would hold it twice."""
    if not (csv_p.is_file() and js_p.is_file()):
        return
    whole = 0
    for line in js_p.read_text().splitlines():
        try:
            whole += isinstance(json.loads(line), dict)
        except ValueError:
            pass
    lines = csv_p.read_text().splitlines()
    if len(lines) > whole + 1:  # header + one row per whole JSONL row
        tmp = csv_p.with_name(csv_p.name + ".tmp")
        tmp.write_text("\n".join(lines[:whole + 1]) + "\n")
        tmp.replace(csv_p)


def _line_end(path: Path) -> str:
    """'\\n' when the file ends inside a line (a run killed mid-write): the next row then starts a
    line of its own instead of being glued to the torn one, where no reader would find it."""
    if not path.exists() or path.stat().st_size == 0:
        return ""
    with open(path, "rb") as f:
        f.seek(-1, 2)
        return "" if f.read(1) == b"\n" else "\n"


def shape_from_json(row: dict) -> Shape:
    prefix = row.get("prefix") if "prefix" in row else row.get("kv_len")
    gemm = row.get("gemm_type") or "bfloat16"  # kernel rows: no GEMM, the sweep's placeholder
    return Shape(row["op"], int(row["num_heads"]), gemm, row["kv_cache_dtype"],
                 int(row["batch_size"]), int(row["isl"]), int(prefix))


def table_logs(root: Path, system: str, op: str, version: str = VERSION) -> list[Path]:
    """The JSONL logs of one table: ``<stem>.jsonl`` and every ``<stem>.<tag>.jsonl``."""
    d, stem = out_dir(root, system, version), OPS[op][0]
    return sorted(p for p in [d / f"{stem}.jsonl", *d.glob(f"{stem}.*.jsonl")] if p.is_file())


def read_rows(root: Path, system: str, version: str = VERSION, skipped: list | None = None) -> list[dict]:
    """The JSON rows of every table log; a line that is not a JSON object (a row torn by a killed
    run) is left out, so its shape counts as not measured, and noted in `skipped` as 'path:line'."""
    rows = []
    for op in OPS:
        for p in table_logs(root, system, op, version):
            for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    row = None
                if not isinstance(row, dict):
                    if skipped is not None:
                        skipped.append(f"{p}:{i}")
                    continue
                rows.append(row)
    return rows


def read_failures(root: Path, system: str, version: str = VERSION) -> list[dict]:
    p = out_dir(root, system, version) / FAILURES
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []


def done_keys(root: Path, system: str, version: str = VERSION, dense_impl: str | None = None,
              skipped: list | None = None) -> set[tuple]:
    """Shapes measured under `version`; with `dense_impl`, only rows of the kernel that implementation runs:
    0.4 (the fused prologue) holds rows of either MLA decode, which 0.2 / 0.3 kept apart by version.
    Unreadable lines are not done (`read_rows`)."""
    out = set()
    for r in read_rows(root, system, version, skipped):
        shape = shape_from_json(r)
        if dense_impl is None or r.get("kernel_source") in (None, kernel_source(shape, dense_impl)):
            out.add(shape.key())
    return out
