"""Where a warehouse home lives: a local folder (Path) or S3-compatible object storage.

`--home s3://bucket/prefix` runs the same code as a local home: the Delta
tables (delta-rs), Arrow datasets and polars scans all take an `s3://` URI.
Endpoint, region and credentials come from the standard AWS environment
(`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_SESSION_TOKEN`, `AWS_REGION`), read by each client itself.

What only a local disk has stays behind the home's kind (`is_object_home`):
fsync of data files, the `perf.duckdb` view file (DuckDB reaches S3 only
through its httpfs extension, which it must download), host-local locks.
Derived tables of an object home are cached on the local disk
($PERFWH_CACHE/homes/<bucket>/<prefix>, default ~/.cache/perfwh), since each
host rebuilds them from the committed measurements when stale.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

SCHEME = "s3://"
ENV_CACHE = "PERFWH_CACHE"


def is_object_url(text) -> bool:
    return isinstance(text, str) and text.startswith(SCHEME)


class ObjectHome(str):
    """`s3://bucket/prefix` (no trailing slash); `/` joins like a path, str() is the URI."""

    def __new__(cls, url: str) -> "ObjectHome":
        parsed = urlparse(str(url))
        key = parsed.path[1:].rstrip("/")  # the path after the bucket's slash
        if parsed.scheme != "s3" or not parsed.netloc or key.startswith("/") or "//" in key \
                or ".." in key.split("/") or parsed.query or parsed.fragment:
            raise ValueError(f"not an object-storage home (s3://bucket/prefix): {url!r}")
        return super().__new__(cls, f"{SCHEME}{parsed.netloc}/{key}".rstrip("/"))

    def __truediv__(self, part) -> "ObjectHome":
        return ObjectHome(f"{self}/{str(part).strip('/')}")

    @property
    def bucket(self) -> str:
        return self[len(SCHEME):].split("/", 1)[0]

    @property
    def key(self) -> str:
        """The prefix within the bucket (no slashes at either end)."""
        rest = self[len(SCHEME):].split("/", 1)
        return rest[1] if len(rest) > 1 else ""

    @property
    def name(self) -> str:
        return self.rsplit("/", 1)[-1]

    @property
    def arrow_path(self) -> str:
        """`bucket/key`: the form pyarrow's S3FileSystem takes."""
        return self[len(SCHEME):]


def is_object_home(home) -> bool:
    return isinstance(home, ObjectHome)


def cache_dir(home: ObjectHome) -> Path:
    """The local folder that holds an object home's derived tables."""
    root = Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "perfwh").expanduser()
    return (root / "homes" / home.bucket / home.key).resolve()


def _endpoint() -> str | None:
    """AWS_ENDPOINT_URL: the one variable every client here (delta-rs, pyarrow, polars, boto3) reads."""
    return os.environ.get("AWS_ENDPOINT_URL") or None


def delta_storage_options() -> dict[str, str]:
    """delta-rs options for S3: commits by conditional put (If-None-Match on the log entry).

    Two writers racing for one table version: exactly one PUT of
    `_delta_log/<version>.json` succeeds, the other gets 412 and delta-rs
    retries on the next version (its conflict checker decides whether the
    commits overlap). That is the safe choice with no external lock;
    `AWS_S3_ALLOW_UNSAFE_RENAME` would let a racing writer overwrite a
    commit. Plain-HTTP endpoints (a local test server) must be allowed
    explicitly. Everything else comes from the AWS environment.
    """
    options = {"conditional_put": "etag"}
    endpoint = _endpoint()
    if endpoint and endpoint.startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    return options


@lru_cache(maxsize=8)
def _s3_filesystem(endpoint: str | None, region: str | None):
    import pyarrow.fs as pafs

    kwargs = {"region": region or "us-east-1"}
    if endpoint:
        kwargs["endpoint_override"] = endpoint
    return pafs.S3FileSystem(**kwargs)


def s3_filesystem():
    """pyarrow's S3 file system for the current AWS environment (credentials by its default chain)."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return _s3_filesystem(_endpoint(), region)


def arrow_location(path) -> tuple[object | None, str]:
    """(file system, path) for pyarrow: the S3 file system and `bucket/key` for an s3:// URI,
    (None, path) for a local path."""
    if is_object_url(str(path)):
        return s3_filesystem(), str(path)[len(SCHEME):]
    return None, str(path)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_S3_ERROR = re.compile(r"<\?xml.*?<Code>(?P<code>[^<]*)</Code>\s*<Message>(?P<message>[^<]*)</Message>.*", re.S)


def one_line(exc: BaseException, limit: int = 400) -> str:
    """An error as one line: delta-rs and the AWS SDK nest causes over several lines."""
    text = _ANSI.sub("", str(exc))
    xml = _S3_ERROR.search(text)  # an S3 error body: its code and message say it all
    if xml:
        text = text[: xml.start()] + f"{xml['code']}: {xml['message']}"
    parts = [p.strip().lstrip("\u21b3").strip() for p in text.splitlines()]
    text = " -> ".join(p for p in parts if p) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
