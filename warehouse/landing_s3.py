"""A landing area on S3-compatible object storage: `s3://bucket/prefix/`.

Collectors on many hosts upload raw logs under one prefix; the sensor lists it
(key -> ETag, no download), and an ingest run fetches only the objects it
ingests into a local cache, pinned to the ETag it was scheduled for (a
re-uploaded object is a new run, never a mix). Endpoint, region and
credentials come from the standard AWS environment (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`), through boto3.

Keys are relative to the prefix with POSIX separators, like the keys of a
landing folder, so partitions and cursors read the same for both.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .readers import format_of

SCHEME = "s3://"
ENV_CACHE = "PERFWH_LANDING_CACHE"
ETAGS_FILE = ".perfwh-etags.json"


def default_cache() -> Path:
    """Where fetched raw logs are kept: $PERFWH_LANDING_CACHE, else ~/.cache/perfwh/landing."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "perfwh" / "landing").expanduser()


def is_s3(url: str) -> bool:
    return str(url).startswith(SCHEME)


@dataclass(frozen=True)
class S3Object:
    key: str  # relative to the landing prefix
    etag: str
    size_bytes: int


@dataclass(frozen=True)
class S3Landing:
    bucket: str
    prefix: str  # "" or ends with "/"

    @classmethod
    def parse(cls, url: str) -> "S3Landing":
        """`s3://bucket[/prefix]`; ValueError for anything else."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an S3 landing URL (s3://bucket/prefix/): {url!r}")
        prefix = parsed.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(parsed.netloc, prefix)

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}"

    def _client(self):
        import boto3

        return boto3.client("s3")

    def list(self) -> list[S3Object]:
        """Raw logs under the prefix (known formats by suffix, as in a landing folder), sorted by key."""
        paginator = self._client().get_paginator("list_objects_v2")
        out = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"][len(self.prefix):]
                if key and not key.endswith("/") and format_of(Path(key)) is not None:
                    out.append(S3Object(key, obj["ETag"].strip('"'), int(obj["Size"])))
        return sorted(out, key=lambda o: o.key)

    def local_root(self, cache: Path) -> Path:
        """The folder that mirrors the prefix under `cache`."""
        return Path(cache) / self.bucket / self.prefix

    def sync(self, cache: Path) -> Path:
        """Mirror the prefix's raw logs into `local_root(cache)`: download objects whose ETag
        changed, delete files whose object is gone; return the mirror's root."""
        root = self.local_root(cache)
        root.mkdir(parents=True, exist_ok=True)
        record = root / ETAGS_FILE
        try:
            known = json.loads(record.read_text()) if record.exists() else {}
        except ValueError:
            known = {}  # a damaged record only costs downloads
        current = {o.key: o.etag for o in self.list()}
        for key, etag in current.items():
            if known.get(key) != etag or not (root / key).is_file():
                self.fetch(key, cache)
        for key in set(known) - set(current):
            (root / key).unlink(missing_ok=True)
        tmp = record.with_name(record.name + ".tmp")
        tmp.write_text(json.dumps(current, sort_keys=True))
        os.replace(tmp, record)
        return root

    def fetch(self, key: str, cache: Path, etag: str | None = None) -> Path:
        """Download one object to `cache/<bucket>/<prefix><key>` (atomically) and return the path.

        With `etag`, the object must still have it (else FileNotFoundError: it changed
        after it was scheduled and a later run takes the new content)."""
        from botocore.exceptions import ClientError

        if ".." in Path(key).parts or Path(key).is_absolute():
            raise ValueError(f"refusing object key {key!r}: it leaves the cache folder")
        target = self.local_root(cache) / key
        target.parent.mkdir(parents=True, exist_ok=True)
        extra = {"IfMatch": f'"{etag}"'} if etag else {}
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".fetch-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                body = self._client().get_object(Bucket=self.bucket, Key=self.prefix + key, **extra)["Body"]
                for chunk in iter(lambda: body.read(1 << 20), b""):
                    out.write(chunk)
            os.replace(tmp, target)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "PreconditionFailed", "412"):
                raise FileNotFoundError(
                    f"raw log {key!r} is no longer in {self.url} with ETag {etag}" if etag
                    else f"raw log {key!r} is no longer in {self.url}"
                ) from None
            raise
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target
