"""Fetch from the Databento Historical API into raw_dir, then load with the replay pipeline.

One chunk (job x schema x date range) is one `timeseries.get_range` request, streamed to
`<file>.part` next to its final place under `raw_dir/<dataset>/<schema>/<job>/`. A download is
accepted only when its zstd frame is complete and the records decoded from it equal
`metadata.get_record_count` for the chunk; it is then renamed into place, and last a manifest
(`<file>.manifest.json`: request, sha256, bytes, records, cost) is written. The manifest is the
commit marker: a chunk is complete when its manifest matches the request and the file, so a crash
at any point leaves a chunk that is either complete or fetched again, never a partial file taken
for a whole one, and complete chunks are never fetched again.

The client does not retry: 429 (honouring Retry-After), 408, 5xx, connection errors and
incomplete downloads are retried here with capped exponential backoff (tenacity); 401/403/422 and
other 4xx fail at once with the server's message. Before any download every pending chunk's
record count and cost are asked for, and a job over its `max_cost_usd` is refused.

One run at a time per job: `run_jobs` holds an fcntl lock on `raw_dir/.locks/<job>.lock` for each
of its jobs for the whole fetch and load; a second run of the same job waits up to `lock_wait_s`,
then gives up with `LockBusyError` (the CLI reports it and exits 0: the running one does the
work). Runs of other jobs (other job files, `--job`) go ahead side by side.

The API key is read from the environment variable the job file names. It is never logged and is
scrubbed from every message this module produces.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import fcntl
import functools
import hashlib
import io
import json
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import zstandard
from loguru import logger
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
    wait_fixed,
)

from histetl import __version__
from histetl.dbn import table_name
from histetl.errors import ConfigError, HistetlError, SourceError, TransientSourceError
from histetl.interrupt import CANCEL, Interrupted
from histetl.jobs import Chunk, DatabentoSettings, JobFile, JobSpec, RetrySettings, plan_chunks
from histetl.options import DEFAULT_BATCH_SIZE, ReplayOptions
from histetl.outputs import check_output_dir
from histetl.precheck import ledger_hits
from histetl.report import FileReport, RunReport, new_run_id
from histetl.secrets import mask
from histetl.sinks import backend_of, display, redact

if TYPE_CHECKING:
    from histetl.pipeline import BatchObserver, Replayer

T = TypeVar("T")

MANIFEST_SUFFIX = ".manifest.json"
PART_SUFFIX = ".part"
LOCK_DIR = ".locks"
MANIFEST_FORMAT = 1
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_READ_SIZE = 1 << 20


class BudgetExceededError(SourceError):
    """A job would cost more than its max_cost_usd; nothing was downloaded."""


class LockBusyError(HistetlError):
    """Another run holds the raw_dir lock."""


class RateLimitedError(TransientSourceError):
    def __init__(self, what: str, *, retry_after: float | None, where: str | None = None) -> None:
        super().__init__(what, where=where)
        self.retry_after = retry_after


# -- the API key ------------------------------------------------------------------------------


def api_key(settings: DatabentoSettings) -> str:
    """The key from the environment variable the job file names (never from the file)."""
    key = os.environ.get(settings.key_env_var, "").strip()
    if not key:
        raise ConfigError(
            f"environment variable {settings.key_env_var} is not set",
            where="databento.key_env_var",
            hint=f"export {settings.key_env_var}=<your Databento API key> (for cron, in the "
            "crontab or a wrapper script), or name another variable in databento.key_env_var",
        )
    return key


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
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**data) if data.get("format") == MANIFEST_FORMAT else None
        except (OSError, ValueError, TypeError):
            return None


def data_path(raw_dir: Path, chunk: Chunk) -> Path:
    return raw_dir / chunk.relpath


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
            if len(self._head) < 8:
                return
            if self._head[:3] != b"DBN":
                self.problem = "not a DBN stream"
                return
            self._header_len = 8 + int.from_bytes(self._head[4:8], "little")
            if len(self._head) <= self._header_len:
                return
            self.record_len = self._head[self._header_len] * 4
            if self.record_len == 0:
                self.problem = "record of length 0"
                return
            data = bytes(self._head[self._header_len :])
            self._head.clear()
        first = (-self.body) % self.record_len
        import numpy as np

        starts = np.frombuffer(data, dtype=np.uint8)[first :: self.record_len]
        if (starts != self.record_len // 4).any():
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
                    if not in_frame and size == len(chunk) and data[:4] != _ZSTD_MAGIC:
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


# -- the API, with retries --------------------------------------------------------------------


class DatabentoApi:
    """The official client plus what it lacks: retries, warnings as logs, a scrubbed key."""

    def __init__(
        self,
        key: str,
        settings: DatabentoSettings,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._key = key
        self._key_env_var = settings.key_env_var
        self._gateway = settings.gateway
        self.retry: RetrySettings = settings.retry
        self._sleep = sleep

    @functools.cached_property
    def gateway(self) -> str:
        if self._gateway:
            return self._gateway
        import databento

        return str(databento.HistoricalGateway.BO1)

    @functools.cached_property
    def _client(self) -> Any:
        """Made on first use: a run with nothing to fetch never imports the client."""
        import databento

        return databento.Historical(key=self._key, gateway=self.gateway)

    def __repr__(self) -> str:  # never show the client (it holds the key)
        return f"DatabentoApi(gateway={redact(self.gateway)!r})"

    def record_count(self, chunk: Chunk) -> int:
        return int(
            self._retrying(
                f"record count of {chunk.label}",
                lambda: self._client.metadata.get_record_count(**_query(chunk)),
            )
        )

    def cost(self, chunk: Chunk) -> float:
        return float(
            self._retrying(
                f"cost of {chunk.label}",
                lambda: self._client.metadata.get_cost(**_query(chunk)),
            )
        )

    def download(self, chunk: Chunk, path: Path, expected_records: int) -> DownloadCheck:
        """Stream the chunk to `path` until a verified complete copy is there."""
        return self._retrying(
            f"download of {chunk.label}", lambda: self._download_once(chunk, path, expected_records)
        )

    def _download_once(self, chunk: Chunk, path: Path, expected: int) -> DownloadCheck:
        path.unlink(missing_ok=True)
        store = self._client.timeseries.get_range(
            **_query(chunk), stype_out=chunk.request()["stype_out"], path=path
        )
        _release(store)
        check = inspect_download(path)
        problem = check.problem
        if problem is None and check.records != expected:
            problem = f"{check.records} records downloaded, the API counted {expected}"
        if problem is not None:
            path.unlink(missing_ok=True)
            raise TransientSourceError(f"incomplete download ({problem})")
        return check

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        def attempt() -> T:
            try:
                with _backend_warnings(what):
                    return call()
            except HistetlError:
                raise
            except Exception as exc:
                error = self._classify(exc, what)
                if error is None:
                    raise
                raise error from None

        retrying = Retrying(
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientSourceError),
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(what, state),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except TransientSourceError as exc:
            raise SourceError(
                f"{exc.what} (gave up after {self.retry.max_attempts} attempts)",
                where=what,
                hint="the API or the network is having trouble: rerun later (complete chunks "
                "are kept), or raise databento.retry.max_attempts / max_wait_s",
            ) from None

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return min(exc.retry_after, self.retry.max_wait_s)
        backoff = wait_exponential_jitter(multiplier=1, max=self.retry.max_wait_s, jitter=1)
        return float(backoff(state))

    def _log_retry(self, what: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        reason = exc.what if isinstance(exc, HistetlError) else type(exc).__name__
        logger.warning(
            "{}: {}; attempt {} of {}, retrying in {:.1f}s",
            what,
            mask(reason, self._key),
            state.attempt_number,
            self.retry.max_attempts,
            wait,
        )

    def _classify(self, exc: Exception, what: str) -> SourceError | None:
        """The client's exception as a SourceError (transient or terminal); None for a bug."""
        from databento.common.error import BentoError, BentoHttpError

        close_leaked_files(exc)
        text = mask(str(exc), self._key)
        if isinstance(exc, BentoHttpError):
            return self._http_error(exc, what)
        if isinstance(exc, BentoError):
            return TransientSourceError(f"download interrupted: {text}")
        module = type(exc).__module__
        if isinstance(exc, OSError) and module.startswith(("requests", "urllib3")):
            return TransientSourceError(f"connection error: {text}")
        if isinstance(exc, socket.timeout | ConnectionError):
            return TransientSourceError(f"connection error: {text}")
        if isinstance(exc, OSError):
            return SourceError(
                f"cannot write the download: {exc.strerror or text}",
                where=exc.filename or what,
                hint="check free space and permissions of raw_dir",
            )
        if module.startswith("databento_dbn") or isinstance(exc, ValueError):
            # get_range reads the downloaded header; a body cut inside it lands here
            return TransientSourceError(f"unreadable download: {text}")
        return None

    def _http_error(self, exc: Any, what: str) -> SourceError:
        status = int(exc.http_status)
        message = mask(_server_message(exc), self._key)
        text = f"HTTP {status} from the Databento API: {message}"
        if status == 429:
            return RateLimitedError(text, retry_after=_retry_after(exc.headers))
        if status == 408 or status >= 500:
            return TransientSourceError(text)
        hints = {
            401: f"check the API key in ${self._key_env_var}: is it set to a current key, "
            "copied in full? (keys: https://databento.com/portal/keys)",
            403: "the key is not allowed this request: check the key's permissions and "
            "your Databento license for the dataset",
            402: "check the billing details of your Databento account",
        }
        hint = hints.get(
            status,
            "check dataset, schema, symbols, stype_in and the dates against the dataset's "
            "available range (`histetl run JOB --dry-run` asks the API without downloading)",
        )
        return SourceError(text, where=what, hint=hint)


def _query(chunk: Chunk) -> dict[str, Any]:
    request = chunk.request()
    return {k: request[k] for k in ("dataset", "schema", "symbols", "stype_in", "start", "end")}


def _server_message(exc: Any) -> str:
    """The API's own words: `case: message` from the JSON body, else the client's message,
    else the start of the body."""
    body = exc.json_body if isinstance(exc.json_body, dict) else {}
    detail = body.get("detail")
    if isinstance(detail, dict) and detail.get("message"):
        parts = [str(detail[k]) for k in ("case", "message", "docs") if detail.get(k)]
        return ": ".join(parts)
    if isinstance(detail, str) and detail.strip() and exc.http_status not in (408, 504):
        return detail.strip()
    if exc.message:
        return " ".join(str(exc.message).split())
    text = exc.http_body if isinstance(exc.http_body, str) else ""
    return " ".join(text.split())[:300] or "(no message)"


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


@contextlib.contextmanager
def _backend_warnings(what: str) -> Iterator[None]:
    """The API's X-Warning header becomes a BentoWarning: log it and carry on."""
    from databento.common.error import BentoWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BentoWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, BentoWarning):
                    logger.warning("{}: the Databento API warns: {}", what, w.message)
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _release(store: Any) -> None:
    """A file-backed DBNStore keeps its file open; close it."""
    for obj in (store, getattr(store, "_data_source", None)):
        buffer = getattr(obj, "_FileDataSource__buffer", None)
        if buffer is not None and not buffer.closed:
            buffer.close()


def close_leaked_files(exc: BaseException) -> int:
    """Close what the client leaves open when get_range(path=...) fails: the output file when
    the stream breaks, the file a DBNStore opened when the downloaded header is unreadable."""
    closed = 0
    tb = exc.__traceback__
    while tb is not None:
        for name, value in tb.tb_frame.f_locals.items():
            for obj in (value, getattr(value, "_data_source", None)):
                buffer = getattr(obj, "_FileDataSource__buffer", None)
                if buffer is not None and not buffer.closed:
                    buffer.close()
                    closed += 1
            if name == "writer" and isinstance(value, io.IOBase) and not value.closed:
                value.close()
                closed += 1
        tb = tb.tb_next
    return closed


# -- the lock ---------------------------------------------------------------------------------


class JobLock:
    """Exclusive fcntl locks on raw_dir/.locks/<job>.lock, one per job, released when the
    process ends (even by a crash). Runs of different jobs go ahead side by side."""

    def __init__(self, raw_dir: Path, jobs: list[str], wait_s: float = 0.0) -> None:
        self.paths = [raw_dir / LOCK_DIR / f"{name}.lock" for name in sorted(set(jobs))]
        self.wait_s = wait_s
        self._handles: list[IO[str]] = []

    def __enter__(self) -> JobLock:
        polling = Retrying(
            retry=retry_if_result(lambda busy: busy is not None),
            stop=stop_after_delay(self.wait_s),
            wait=wait_fixed(0.1),
            sleep=CANCEL.sleep,  # a stop request ends the wait at once
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        busy = polling(self._try_all)
        if busy is not None:
            raise LockBusyError(
                f"another histetl run holds the lock of this job ({busy}); nothing was done",
                where=str(self.paths[0].parent),
                hint="that run fetches and loads the same job; let it finish, "
                "or pass --wait SECONDS to wait for it",
            )
        return self

    def _try_all(self) -> str | None:
        """Take every lock, or none: returns who holds a busy one."""
        for path in self.paths:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                handle = path.open("a+", encoding="utf-8")
            except OSError as exc:
                self._release()
                raise ConfigError(
                    f"cannot create the lock file: {exc.strerror}",
                    where=str(path),
                    hint="raw_dir must be a writable directory",
                ) from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                self._release()
                return f"{path.stem}: {holder}"
            handle.seek(0)
            handle.truncate()
            started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {started}\n")
            handle.flush()
            self._handles.append(handle)
        return None

    def _release(self) -> None:
        for handle in self._handles:
            handle.close()  # closing releases the flock
        self._handles = []

    def __exit__(self, *exc_info: object) -> None:
        self._release()


# -- plans ------------------------------------------------------------------------------------


@dataclass
class ChunkPlan:
    chunk: Chunk
    status: str  # complete | partial | missing -> downloaded | failed
    records: int | None = None
    cost_usd: float | None = None
    manifest: Manifest | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def pending(self) -> bool:
        return self.status in ("partial", "missing")


@dataclass
class JobPlan:
    job: JobSpec
    chunks: list[ChunkPlan] = field(default_factory=list)

    @property
    def pending(self) -> list[ChunkPlan]:
        return [c for c in self.chunks if c.pending]

    @property
    def cost_usd(self) -> float:
        return sum(c.cost_usd or 0.0 for c in self.pending)

    @property
    def records(self) -> int:
        return sum(c.records or 0 for c in self.pending)

    @property
    def over_budget(self) -> bool:
        limit = self.job.max_cost_usd
        return limit is not None and self.cost_usd > limit + 1e-9


def local_plans(
    jobs: list[JobSpec], raw_dir: Path, force: bool = False, today: dt.date | None = None
) -> list[JobPlan]:
    """Every chunk of the jobs with its status under raw_dir; no network."""
    plans = []
    for job in jobs:
        plan = JobPlan(job)
        for chunk in plan_chunks(job, today):
            state = chunk_state(raw_dir, chunk)
            status = "partial" if force and state.status == "complete" else state.status
            records = state.manifest.records if state.manifest else None
            cost = state.manifest.cost_usd if state.manifest else None
            plan.chunks.append(ChunkPlan(chunk, status, records, cost, state.manifest))
        plans.append(plan)
    return plans


def price_plans(plans: list[JobPlan], api: DatabentoApi) -> None:
    """Ask the API for the record count and cost of every pending chunk."""
    for plan in plans:
        for item in plan.pending:
            item.records = api.record_count(item.chunk)
            item.cost_usd = api.cost(item.chunk) if item.records else 0.0


def check_budget(plans: list[JobPlan]) -> None:
    over = [p for p in plans if p.over_budget]
    if over:
        details = "; ".join(
            f"job {p.job.name} would cost ${p.cost_usd:,.2f} for {len(p.pending)} chunks "
            f"({p.records:,} records), more than max_cost_usd ${p.job.max_cost_usd:,.2f}"
            for p in over
        )
        raise BudgetExceededError(
            f"{details}; nothing was downloaded",
            where="max_cost_usd",
            hint="raise max_cost_usd, narrow symbols, schemas or dates, and check the plan "
            "with --dry-run",
        )


def fetch_chunk(api: DatabentoApi, raw_dir: Path, item: ChunkPlan) -> None:
    """Download one pending chunk: verify, rename into place, then write its manifest."""
    chunk = item.chunk
    final, part, manifest = (
        data_path(raw_dir, chunk),
        part_path(raw_dir, chunk),
        manifest_path(raw_dir, chunk),
    )
    final.parent.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)  # the chunk is incomplete until the new one is written
    started = time.perf_counter()
    records = item.records if item.records is not None else api.record_count(chunk)
    try:
        check = api.download(chunk, part, records)
        _fsync(part)
        part.replace(final)
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
    _write_atomic(manifest, item.manifest.to_json())
    _fsync_dir(final.parent)
    item.status, item.records = "downloaded", check.records
    item.seconds = time.perf_counter() - started


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


# -- a run: plan, guard, fetch, load ----------------------------------------------------------


@dataclass
class RunOptions:
    jobs: tuple[str, ...] = ()
    dry_run: bool = False
    force: bool = False  # fetch complete chunks again and reload them
    db: str | None = None  # overrides $HISTETL_DB and the job file's `db`
    lock_wait_s: float = 0.0
    batch_size: int = DEFAULT_BATCH_SIZE
    cluster: str | None = None  # overrides the job file's `cluster` (the CLI adds the env)
    max_db_writers: int = 4
    today: dt.date | None = None  # what relative dates resolve against (default: UTC today)
    sleep: Callable[[float], None] = time.sleep  # between retries
    observer: BatchObserver | None = None  # sees every batch (the --html quality report)


@dataclass
class RunResult:
    plans: list[JobPlan]
    report: RunReport | None = None  # None for a dry run
    error: SourceError | None = None  # a fetch failure; the complete chunks were still loaded

    @property
    def downloaded(self) -> list[ChunkPlan]:
        return [c for p in self.plans for c in p.chunks if c.status == "downloaded"]

    def to_dict(self) -> dict[str, Any]:
        chunks = [
            {
                "job": c.chunk.job,
                "file": str(c.chunk.relpath),
                **{k: c.chunk.request()[k] for k in ("dataset", "schema", "start", "end")},
                "status": c.status,
                "records": c.records,
                "cost_usd": c.cost_usd,
                "seconds": round(c.seconds, 3),
                "error": c.error,
            }
            for p in self.plans
            for c in p.chunks
        ]
        out: dict[str, Any] = self.report.to_dict() if self.report else {"mode": "dry-run"}
        out["chunks"] = chunks
        out["error"] = self.error.message if self.error else None
        return out


def run_jobs(
    job_file: JobFile,
    options: RunOptions | None = None,
    on_chunk: Callable[[ChunkPlan], None] | None = None,
    on_file: Callable[[FileReport], None] | None = None,
) -> RunResult:
    """`histetl run`: plan, check the budget, fetch the missing chunks, load the job's files."""
    options = options or RunOptions()
    jobs = job_file.select(options.jobs)
    # Everything that can be wrong with the configuration fails here, before any work.
    for job in jobs:
        plan_chunks(job, options.today)
    key = api_key(job_file.databento)
    db = _check_db(job_file.target_db(options.db))
    replay_options = ReplayOptions(
        db=db,
        batch_size=options.batch_size,
        force=options.force,
        on_invalid=job_file.on_invalid,
        quarantine_dir=job_file.quarantine_dir,
        rules_files=job_file.rules,
        mapping_file=job_file.mapping,
        cluster=options.cluster or job_file.cluster,
        max_db_writers=options.max_db_writers,
    )
    loader = _Loader(replay_options, options.observer)
    api = DatabentoApi(key, job_file.databento, sleep=options.sleep)
    raw_dir = job_file.raw_dir
    if options.dry_run:
        plans = local_plans(jobs, raw_dir, options.force, options.today)
        price_plans(plans, api)
        return RunResult(plans)
    with JobLock(raw_dir, [j.name for j in jobs], options.lock_wait_s):
        plans = local_plans(jobs, raw_dir, options.force, options.today)
        price_plans(plans, api)
        check_budget(plans)
        error = _fetch_all(plans, api, raw_dir, on_chunk)
        report = _load(plans, raw_dir, loader, on_file)
    return RunResult(plans, report, error)


def _fetch_all(
    plans: list[JobPlan],
    api: DatabentoApi,
    raw_dir: Path,
    on_chunk: Callable[[ChunkPlan], None] | None,
) -> SourceError | None:
    """Fetch pending chunks in order; stop at the first failure and return it. A signal
    stops the download in progress at once (its partial file is removed) and raises
    Interrupted."""
    fetched, total = 0, sum(len(plan.pending) for plan in plans)
    for plan in plans:
        for item in plan.pending:
            try:
                with CANCEL.raising():
                    fetch_chunk(api, raw_dir, item)
            except Interrupted as exc:
                raise Interrupted(
                    exc.signum,
                    f"{fetched} of {total} chunks downloaded (no partial download is kept), "
                    "nothing loaded yet",
                ) from None
            except SourceError as exc:
                item.status, item.error = "failed", exc.message
                if on_chunk is not None:
                    on_chunk(item)
                return exc
            fetched += 1
            if on_chunk is not None:
                on_chunk(item)
    return None


class _Loader:
    """The replay side of a run. Rules and mapping files are compiled at once (a bad one fails
    before any download); the pipeline itself is built only when a chunk needs loading, so a
    run that finds nothing new loads no stage."""

    def __init__(self, options: ReplayOptions, observer: BatchObserver | None) -> None:
        self.options = options
        self.observer = observer
        self.run_id = new_run_id()
        self._replayer: Replayer | None = None
        if options.rules_files or options.mapping_file is not None or observer is not None:
            self.replayer()
        else:  # what Replayer checks, without building one
            options.check()
            check_output_dir(options.quarantine_dir, "--quarantine-dir")

    def replayer(self) -> Replayer:
        if self._replayer is None:
            from histetl.pipeline import Replayer

            self._replayer = Replayer(self.options, self.run_id)
            self._replayer.observer = self.observer
        return self._replayer

    def table_for(self, schema: str) -> str:
        """The table a schema's files load into (the mapping's `table:`, else canonical)."""
        if self._replayer is None:
            return table_name(schema)
        from histetl.schemas import table_spec

        return self._replayer.mapping.for_spec(table_spec(schema)).table


def _load(
    plans: list[JobPlan],
    raw_dir: Path,
    loader: _Loader,
    on_file: Callable[[FileReport], None] | None,
) -> RunReport:
    """Load every complete chunk of the jobs through the replay pipeline. A chunk the ledger
    has for its target table (the rule replay uses: sha256 + the table its schema maps to) is
    reported as skipped without reading it again (unless force)."""
    ready = [
        c
        for p in plans
        for c in p.chunks
        if c.status in ("complete", "downloaded") and c.manifest is not None
    ]
    # Chunks downloaded just now go straight to the pipeline (which checks the ledger itself);
    # the others are looked up by their manifest's sha256. When the lookup cannot be made
    # cheaply, they go to the pipeline too, which checks each one.
    options = loader.options
    known = {c.manifest.sha256 for c in ready if c.status == "complete" and c.manifest}
    hits = (
        ledger_hits(options.db, known, options.db_retry, loader.table_for)
        if known and not options.force
        else None
    ) or {}
    todo, skipped = [], []
    for item in ready:
        assert item.manifest is not None
        entry = hits.get(item.manifest.sha256) if item.status == "complete" else None
        path = data_path(raw_dir, item.chunk)
        if entry is None:
            todo.append(path)
            continue
        skipped.append(
            FileReport(
                path=str(path),
                dataset=item.chunk.dataset,
                schema=item.chunk.schema,
                table=entry.table,
                skipped=entry.records,
                status="skipped",
                sha256=item.manifest.sha256,
            )
        )
    for file_report in skipped:
        if on_file is not None:
            on_file(file_report)
    if todo:
        report = loader.replayer().run(todo, on_file=on_file)
    else:
        report = RunReport(loader.run_id, display(options.db), "load")
        report.finished_at = report.started_at
    report.files[:0] = skipped
    return report


def _check_db(db: str) -> str:
    backend_of(db)  # ConfigError for an unknown scheme; it never shows the password
    return db


def format_plans(plans: list[JobPlan], show_files: bool = False) -> str:
    """A plain-text plan: per job a summary line, then one line per chunk."""
    lines = []
    for plan in plans:
        job = plan.job
        statuses: dict[str, int] = {}
        for c in plan.chunks:
            statuses[c.status] = statuses.get(c.status, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in statuses.items())
        budget = f"${job.max_cost_usd:,.2f}" if job.max_cost_usd is not None else "no limit"
        lines.append(
            f"job {job.name}: {job.dataset} {','.join(job.schema_list)} "
            f"{','.join(job.symbols)} ({job.stype_in}), {len(plan.chunks)} chunks: {summary}"
        )
        for c in plan.chunks:
            records = f"{c.records:,}" if c.records is not None else "?"
            cost = f"${c.cost_usd:,.4f}" if c.cost_usd is not None else "-"
            extra = f"  {c.chunk.relpath}" if show_files else ""
            lines.append(
                f"  {c.chunk.schema:<10} {_span(c.chunk):<24} {c.status:<10} "
                f"{records:>12} records {cost:>11}{extra}"
            )
        if plan.pending and any(c.records is None for c in plan.pending):
            lines.append(
                f"  to fetch: {len(plan.pending)} chunks (budget {budget}; "
                "`histetl run JOB_FILE --dry-run` asks the API for records and cost)"
            )
        elif plan.pending:
            verdict = "OVER BUDGET, would be refused" if plan.over_budget else "within budget"
            lines.append(
                f"  to fetch: {len(plan.pending)} chunks, {plan.records:,} records, "
                f"${plan.cost_usd:,.4f} (budget {budget}: {verdict})"
            )
        else:
            lines.append("  nothing to fetch")
    return "\n".join(lines)


def _span(chunk: Chunk) -> str:
    return chunk.label.rsplit(" ", 1)[-1]
