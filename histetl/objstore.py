"""Object storage: the one module that knows `s3://` URLs.

Credentials and the server come from the standard AWS variables, read by delta-rs (lakes) and
by s3fs (raw DBN files) alike: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_SESSION_TOKEN`, `AWS_REGION`, and for an S3-compatible server `AWS_ENDPOINT_URL`
(`AWS_ALLOW_HTTP=true` lets delta-rs use a plain-http one). Credentials in a URL are refused:
they would end up in logs and reports. Every request has a timeout and a bounded number of
retries, so a silent or unreachable endpoint fails in seconds, never hangs. Errors are one line
without secrets (`histetl.secrets.scrub_env`).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import IO, Any, cast

from histetl.errors import (
    FULL_DISK_HINT,
    ConfigError,
    HistetlError,
    LoadError,
    TransientLoadError,
    full_disk,
)
from histetl.secrets import redact, scrub_env

SCHEME = "s3://"
TIMEOUT_S = 60  # one request (a part upload included)
CONNECT_TIMEOUT_S = 10
MAX_RETRIES = 3  # per request, with backoff, before the error reaches the pipeline
BLOCK_SIZE = 8 << 20  # bytes per ranged GET of an input file
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def is_s3(url: str) -> bool:
    return url[: len(SCHEME)].lower() == SCHEME


def check_url(url: str, where: str) -> str:
    """`s3://bucket[/prefix]` without a trailing slash; ConfigError for credentials in the URL
    or a missing bucket name."""
    rest = url[len(SCHEME) :]
    bucket = rest.split("/", 1)[0]
    if "@" in bucket:
        raise ConfigError(
            f"credentials in the URL {redact(url)}",
            where=where,
            hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead",
        )
    if not bucket:
        raise ConfigError(f"no bucket in {url!r}", where=where, hint="write s3://bucket/prefix")
    return SCHEME + rest.rstrip("/")


def endpoint() -> str:
    """The S3 server shown in messages: AWS_ENDPOINT_URL, or AWS S3 itself."""
    url = os.environ.get("AWS_ENDPOINT_URL", "")
    return redact(url) if url else "AWS S3"


def delta_options() -> dict[str, str]:
    """delta-rs (object_store) storage options: timeouts and bounded retries. Everything else
    (credentials, region, endpoint, AWS_ALLOW_HTTP) delta-rs reads from the environment."""
    return {
        "timeout": f"{TIMEOUT_S}s",
        "connect_timeout": f"{CONNECT_TIMEOUT_S}s",
        "max_retries": str(MAX_RETRIES),
        "retry_timeout": f"{TIMEOUT_S}s",
    }


def storage_error(exc: BaseException, where: str) -> HistetlError:
    """One line for a failed storage request: a missing bucket or denied credentials are
    terminal (ConfigError), an unreachable or silent endpoint transient."""
    text = scrub_env(_ANSI.sub("", str(exc)))
    lowered = text.lower()
    if "nosuchbucket" in lowered or "bucket does not exist" in lowered:
        return ConfigError(
            "the bucket does not exist",
            where=where,
            hint=f"create it on {endpoint()}, or fix the bucket name",
        )
    if isinstance(exc, FileNotFoundError):
        return ConfigError("no such object", where=where, hint="check the s3:// URL")
    if isinstance(exc, PermissionError) or any(
        word in lowered
        for word in (
            "invalidaccesskeyid",
            "signaturedoesnotmatch",
            "accessdenied",
            "access denied",
            "expiredtoken",
            "forbidden",
        )
    ):
        return ConfigError(
            f"access denied by {endpoint()}",
            where=where,
            hint="check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)",
        )
    if any(
        word in lowered
        for word in ("connect", "timed out", "timeout", "dns error", "error sending request")
    ):
        return TransientLoadError(
            f"cannot reach {endpoint()}",
            where=where,
            hint="check AWS_ENDPOINT_URL and the network; rerun: loaded files are skipped",
        )
    lines = [line.strip(" ↳") for line in text.splitlines() if line.strip(" ↳")]
    first = lines[0] if lines else type(exc).__name__
    hint = FULL_DISK_HINT if full_disk(exc) else None
    return LoadError(f"storage request failed: {first}", where=where, hint=hint)


_FILESYSTEMS: dict[int, Any] = {}  # per process: s3fs's event-loop thread does not survive fork


def filesystem() -> Any:
    """An s3fs filesystem from the environment, with the timeouts and retries above (one per
    process)."""
    fs = _FILESYSTEMS.get(os.getpid())
    if fs is not None:
        return fs
    try:
        import s3fs
    except ImportError:
        raise ConfigError(
            "s3:// needs the s3fs package, which is not installed",
            hint="install the lake extra: pip install 'histetl[lake]'",
        ) from None
    fs = s3fs.S3FileSystem(
        skip_instance_cache=True,
        use_listings_cache=False,  # a lake or raw folder changes while histetl runs
        config_kwargs={
            "connect_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": TIMEOUT_S,
            "retries": {"max_attempts": MAX_RETRIES, "mode": "standard"},
        },
    )
    _FILESYSTEMS[os.getpid()] = fs
    return fs


def folders(url: str, where: str) -> list[str]:
    """The names of the folders directly under `url` (s3://bucket/prefix), sorted."""
    fs = filesystem()
    try:
        entries = fs.ls(url, detail=True)
    except FileNotFoundError:
        return []
    except Exception as exc:  # botocore and aiohttp errors have no common base
        raise storage_error(exc, where) from None
    return sorted(
        e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory"
    )


def list_files(url: str, suffixes: tuple[str, ...]) -> list[str]:
    """`url` itself when it names an object, else every object under it (a prefix, searched
    recursively) whose name ends with one of `suffixes`; s3:// URLs, sorted."""
    url = check_url(url, "PATH")
    fs = filesystem()
    path = url[len(SCHEME) :]
    try:
        if fs.isfile(path):
            return [url]
        keys = [k for k in fs.find(path) if k.endswith(suffixes)]
        if not keys and not fs.exists(path.split("/", 1)[0]):
            raise FileNotFoundError("NoSuchBucket")
    except FileNotFoundError as exc:
        if "bucket" in str(exc).lower():
            raise storage_error(exc, url) from None
        return []
    except Exception as exc:  # botocore and aiohttp errors have no common base
        raise storage_error(exc, url) from None
    return sorted(SCHEME + k for k in keys)


class _Reader(io.RawIOBase):
    """An S3 object read in blocks (ranged GETs, read-ahead), whose failures are one-line
    errors (transient ones retried per file by the pipeline)."""

    def __init__(self, handle: Any, url: str) -> None:
        super().__init__()
        self._handle, self._url = handle, url

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._call(self._handle.read, len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return int(self._call(self._handle.seek, offset, whence))

    def tell(self) -> int:
        return int(self._handle.tell())

    def close(self) -> None:
        self._handle.close()
        super().close()

    def _call(self, method: Any, *args: Any) -> Any:
        try:
            return method(*args)
        except Exception as exc:
            raise storage_error(exc, self._url) from None


def open_file(url: str) -> tuple[IO[bytes], int]:
    """The object at `url` for reading, and its size."""
    fs = filesystem()
    try:
        handle = fs.open(url, "rb", block_size=BLOCK_SIZE, cache_type="readahead")
    except Exception as exc:
        raise storage_error(exc, url) from None
    return io.BufferedReader(_Reader(handle, url)), int(handle.size)


def create(url: str) -> IO[bytes]:
    """A new object at `url`, written as a stream (multipart upload) and stored on close."""
    try:
        return cast(IO[bytes], filesystem().open(url, "wb", block_size=BLOCK_SIZE))
    except Exception as exc:
        raise storage_error(exc, url) from None


# -- the objects of a `run` job's raw_dir (raw_dir: s3://bucket/prefix) ----------------------


def sizes(url: str) -> dict[str, int]:
    """The size of every object under the prefix `url`, by s3:// URL (one listing);
    ConfigError when the bucket does not exist."""
    fs = filesystem()
    path = url[len(SCHEME) :]
    try:
        found = fs.find(path, detail=True)
        if not found and not fs.exists(path.split("/", 1)[0]):
            raise FileNotFoundError("NoSuchBucket")
    except Exception as exc:  # botocore and aiohttp errors have no common base
        raise storage_error(exc, url) from None
    return {SCHEME + k: int(v["size"]) for k, v in found.items() if v.get("type") != "directory"}


def read_bytes(url: str) -> bytes | None:
    """The whole (small) object at `url`, or None when there is none."""
    try:
        return bytes(filesystem().cat_file(url))
    except FileNotFoundError:
        return None
    except Exception as exc:
        raise storage_error(exc, url) from None


def put_bytes(url: str, data: bytes) -> None:
    """Store `data` at `url` in one PUT (small objects only): S3 stores all of it or nothing."""
    try:
        filesystem().pipe_file(url, data)
    except Exception as exc:
        raise storage_error(exc, url) from None


def upload(path: Path, url: str) -> int:
    """Copy the local file to `url` and return the size S3 reports for the stored object. The
    object appears whole or not at all (one PUT, or a multipart upload S3 assembles at its
    completion)."""
    fs = filesystem()
    try:
        fs.put_file(str(path), url)
        return int(fs.info(url)["size"])
    except Exception as exc:
        raise storage_error(exc, url) from None


def delete(url: str) -> None:
    """Remove the object at `url`; nothing when there is none."""
    try:
        filesystem().rm_file(url)
    except FileNotFoundError:
        pass
    except Exception as exc:
        raise storage_error(exc, url) from None
