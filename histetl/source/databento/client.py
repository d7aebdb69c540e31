"""The Historical API client: the official `databento` client plus what it lacks (retries with
backoff that honour Retry-After, warnings as logs, a key scrubbed from every message).

The client does not retry: 429 (honouring Retry-After), 408, 5xx, connection errors and
incomplete downloads are retried here with capped exponential backoff (tenacity); 401/403/422 and
other 4xx fail at once with the server's message. The API key is read from the environment
variable the job file names; it is never logged and is masked in every message."""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import functools
import io
import os
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from histetl.errors import ConfigError, HistetlError, SourceError, TransientSourceError
from histetl.jobs import Chunk, DatabentoSettings, RetrySettings
from histetl.secrets import mask, redact
from histetl.source.databento.download import DownloadCheck, inspect_download

T = TypeVar("T")


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
        self._timeout_s = settings.timeout_s
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

        client = databento.Historical(key=self._key, gateway=self.gateway)
        for api in (client.batch, client.metadata, client.symbology, client.timeseries):
            # requests' connect and read timeouts, per request (annotated int; requests takes
            # any number of seconds)
            api.TIMEOUT = self._timeout_s  # type: ignore[assignment]
        return client

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
            return TransientSourceError(f"connection error: {connection_reason(text)}")
        if isinstance(exc, socket.timeout | ConnectionError):
            return TransientSourceError(f"connection error: {connection_reason(text)}")
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


_HOST = re.compile(r"host='([^']+)', port=(\d+)")


def connection_reason(text: str) -> str:
    """The one reason inside requests' and urllib3's nested repr of a failed connection
    (HTTPSConnectionPool(...): Max retries exceeded ... (Caused by NameResolutionError(...)))."""
    host = _HOST.search(text)
    name = host[1] if host else "the API host"
    where = f"{host[1]}:{host[2]}" if host else "the API"
    lowered = text.lower()
    if "failed to resolve" in lowered or "name or service not known" in lowered:
        return f"cannot resolve {name} (DNS)"
    if "connection refused" in lowered:
        return f"connection refused by {where}"
    if "timed out" in lowered:
        return f"no answer from {where} (timed out)"
    if "connection reset" in lowered or "connection aborted" in lowered:
        return f"connection to {where} was cut"
    return text


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
