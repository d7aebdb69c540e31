"""Downloads that land whole or not at all: a chunk is streamed to `<file>.part`, accepted only
when its zstd frame is complete and its records equal `metadata.get_record_count`, renamed
into place, and last a manifest (`<file>.manifest.json`: request, sha256, bytes, records,
cost) is written. The manifest is the commit marker: a crash at any point leaves a chunk that
is either complete or fetched again, never a partial file taken for a whole one.

A raw_dir on object storage (`s3://bucket/prefix`, through `histetl.objstore`) keeps the same
layout and order: the `.part` is a local file in the raw_dir's state folder (`local_dir`),
verified the same way, then uploaded (S3 shows an object whole or not at all, and its size is
checked), and only then is the manifest stored, in one PUT.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zstandard

from histetl import __version__, objstore
from histetl.dbn import DBN_MAGIC, PRELUDE, RECORD_LENGTH_UNIT, ZSTD_MAGIC
from histetl.errors import LoadError
from histetl.faults import fault_point
from histetl.jobs import Chunk, RawDir
from histetl.logs import state_dir
from histetl.secrets import redact

if TYPE_CHECKING:
    from histetl.source.databento.client import DatabentoApi
    from histetl.source.databento.plan import ChunkPlan


MANIFEST_SUFFIX = ".manifest.json"
PART_SUFFIX = ".part"
MANIFEST_FORMAT = 1
_READ_SIZE = 1 << 20


# -- manifests and chunk status ---------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    job: str
    file: str
    request: dict[str, Any]
    sha256: str
    bytes: int
    records: int
    cost_usd: float | None
    fetched_at: str
    gateway: str
    histetl_version: str = __version__
    format: int = MANIFEST_FORMAT

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2) + "\n"

    @classmethod
    def read(cls, path: Path) -> Manifest | None:
        """None when missing or unreadable (an unreadable manifest is an incomplete chunk)."""
        try:
            return parse_manifest(path.read_bytes())
        except OSError:
            return None


def parse_manifest(text: bytes | None) -> Manifest | None:
    """None when missing or unreadable."""
    try:
        data = json.loads(text) if text is not None else None
        return Manifest(**data) if data and data.get("format") == MANIFEST_FORMAT else None
    except (ValueError, TypeError, AttributeError):
        return None


def data_path(raw_dir: Path, chunk: Chunk) -> Path:
    return raw_dir / chunk.relpath


def local_dir(raw_dir: RawDir) -> Path:
    """Where a run keeps local files: raw_dir itself, or for an s3:// raw_dir a folder of the
    user's state folder named by a digest of the URL (the job locks and the `.part` files
    being downloaded)."""
    if not isinstance(raw_dir, str):
        return raw_dir
    return state_dir() / "s3-raw" / hashlib.sha256(raw_dir.encode()).hexdigest()[:16]


def data_location(raw_dir: RawDir, chunk: Chunk) -> Path | str:
    """The chunk's data file: a path, or an s3:// URL."""
    if isinstance(raw_dir, str):
        return f"{raw_dir}/{chunk.relpath.as_posix()}"
    return data_path(raw_dir, chunk)


def manifest_path(raw_dir: Path, chunk: Chunk) -> Path:
    path = data_path(raw_dir, chunk)
    return path.with_name(path.name + MANIFEST_SUFFIX)


def part_path(raw_dir: Path, chunk: Chunk) -> Path:
    path = data_path(raw_dir, chunk)
    return path.with_name(path.name + PART_SUFFIX)


@dataclass(frozen=True)
class ChunkState:
    status: str  # complete | partial | missing
    manifest: Manifest | None = None


def chunk_states(raw_dir: RawDir, chunks: list[Chunk]) -> list[ChunkState]:
    """The state of each chunk; under an s3:// raw_dir from one listing of the prefix and a GET
    of each manifest there is (a missing bucket is a ConfigError)."""
    if not isinstance(raw_dir, str):
        return [chunk_state(raw_dir, chunk) for chunk in chunks]
    sizes = objstore.sizes(raw_dir)
    states = []
    for chunk in chunks:
        url = str(data_location(raw_dir, chunk))
        manifest_url = url + MANIFEST_SUFFIX
        manifest = (
            parse_manifest(objstore.read_bytes(manifest_url)) if manifest_url in sizes else None
        )
        if (
            manifest is not None
            and manifest.request == chunk.request()
            and sizes.get(url) == manifest.bytes
        ):
            states.append(ChunkState("complete", manifest))
            continue
        states.append(ChunkState("partial" if url in sizes or manifest_url in sizes else "missing"))
    return states


def chunk_state(raw_dir: Path, chunk: Chunk) -> ChunkState:
    """complete: manifest matches the request and the file's size. partial: something is there
    but not a complete chunk (a .part, a file without manifest). missing: nothing."""
    path = data_path(raw_dir, chunk)
    manifest = Manifest.read(manifest_path(raw_dir, chunk))
    if manifest is not None and manifest.request == chunk.request():
        with contextlib.suppress(OSError):
            if path.stat().st_size == manifest.bytes:
                return ChunkState("complete", manifest)
    if path.exists() or part_path(raw_dir, chunk).exists() or manifest is not None:
        return ChunkState("partial")
    return ChunkState("missing")


# -- checking a download ----------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadCheck:
    sha256: str
    bytes: int
    records: int
    complete: bool  # every zstd frame ends, the DBN header is whole, no partial record
    problem: str | None = None


class _RecordCounter:
    """Counts fixed-length DBN records in a decompressed stream, one pass, vectorized."""

    def __init__(self) -> None:
        self._head = bytearray()
        self._header_len: int | None = None
        self.record_len = 0
        self.body = 0
        self.problem: str | None = None

    def feed(self, data: bytes) -> None:
        if self.problem is not None or not data:
            return
        if self._header_len is None or self.record_len == 0:
            self._head += data
            if len(self._head) < PRELUDE.size:
                return
            magic, _version, metadata_len = PRELUDE.unpack_from(self._head)
            if magic != DBN_MAGIC:
                self.problem = "not a DBN stream"
                return
            self._header_len = PRELUDE.size + metadata_len
            if len(self._head) <= self._header_len:
                return
            self.record_len = self._head[self._header_len] * RECORD_LENGTH_UNIT
            if self.record_len == 0:
                self.problem = "record of length 0"
                return
            data = bytes(self._head[self._header_len :])
            self._head.clear()
        first = (-self.body) % self.record_len
        import numpy as np

        starts = np.frombuffer(data, dtype=np.uint8)[first :: self.record_len]
        if (starts != self.record_len // RECORD_LENGTH_UNIT).any():
            self.problem = "records of mixed lengths"
        self.body += len(data)

    def finish(self) -> tuple[int, str | None]:
        """(whole records, problem or None)."""
        if self.problem is not None:
            return 0, self.problem
        if self.record_len == 0:  # no record seen: at most a header
            whole = self._header_len is not None and len(self._head) == self._header_len
            return 0, None if whole else "ends inside the DBN header"
        if self.body % self.record_len:
            return self.body // self.record_len, "ends inside a record"
        return self.body // self.record_len, None


def inspect_download(path: Path) -> DownloadCheck:
    """sha256, size, record count and completeness of a zstd DBN file, in one pass."""
    digest = hashlib.sha256()
    size = 0
    counter = _RecordCounter()
    dobj: Any = None
    in_frame = False
    problem: str | None = None
    with path.open("rb") as handle:
        while chunk := handle.read(_READ_SIZE):
            digest.update(chunk)
            size += len(chunk)
            data = chunk
            while data and problem is None:
                if dobj is None:
                    if not in_frame and size == len(chunk) and data[:4] != ZSTD_MAGIC:
                        problem = "not zstd-compressed"
                        break
                    dobj = zstandard.ZstdDecompressor().decompressobj()
                    in_frame = True
                try:
                    counter.feed(dobj.decompress(data))
                except zstandard.ZstdError as exc:
                    problem = f"zstd: {exc}"
                    break
                if dobj.eof:
                    data, dobj, in_frame = dobj.unused_data, None, False
                else:
                    data = b""
    records, record_problem = counter.finish()
    if problem is None and (in_frame or size == 0):
        problem = "zstd frame cut off" if size else "empty file"
    problem = problem or record_problem
    return DownloadCheck(digest.hexdigest(), size, records, problem is None, problem)


def fetch_chunk(api: DatabentoApi, raw_dir: RawDir, item: ChunkPlan) -> None:
    """Download one pending chunk: verify, put it in place (rename, or upload to an s3://
    raw_dir), then write its manifest."""
    chunk = item.chunk
    remote = str(data_location(raw_dir, chunk)) if isinstance(raw_dir, str) else None
    local = local_dir(raw_dir)
    final, part, manifest = (
        data_path(local, chunk),
        part_path(local, chunk),
        manifest_path(local, chunk),
    )
    final.parent.mkdir(parents=True, exist_ok=True)
    # the chunk is incomplete until the new manifest is written
    if remote is None:
        manifest.unlink(missing_ok=True)
    elif item.status != "missing":  # the listing saw something under the chunk's name
        objstore.delete(remote + MANIFEST_SUFFIX)
    started = time.perf_counter()
    records = item.records if item.records is not None else api.record_count(chunk)
    try:
        check = api.download(chunk, part, records)
        if remote is None:
            _fsync(part)
            part.replace(final)
        else:
            _upload(part, remote, check.bytes)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    item.manifest = Manifest(
        job=chunk.job,
        file=final.name,
        request=chunk.request(),
        sha256=check.sha256,
        bytes=check.bytes,
        records=check.records,
        cost_usd=item.cost_usd,
        fetched_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        gateway=redact(api.gateway),
    )
    fault_point("before_manifest")
    if remote is None:
        _write_atomic(manifest, item.manifest.to_json())
        _fsync_dir(final.parent)
    else:
        objstore.put_bytes(remote + MANIFEST_SUFFIX, item.manifest.to_json().encode())
    item.status, item.records = "downloaded", check.records
    item.seconds = time.perf_counter() - started


def _upload(part: Path, url: str, size: int) -> None:
    """Upload the verified `.part` to `url` and remove it; a stored size other than the
    verified one is an error (the chunk then stays incomplete)."""
    stored = objstore.upload(part, url)
    part.unlink()
    if stored != size:
        raise LoadError(
            f"the uploaded object has {stored:,} bytes, the verified download {size:,}",
            where=url,
            hint="rerun: the chunk is fetched again",
        )


def _fsync(path: Path) -> None:
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + PART_SUFFIX)
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
