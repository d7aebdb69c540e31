"""Connecting to PostgreSQL: the URI checked up front, timeouts added, driver errors sorted
into transient (retry) and terminal (fail at once), and a watchdog for a silent server.

Timeouts: libpq's `connect_timeout` bounds connecting (and authenticating); TCP keepalives and
`tcp_user_timeout` detect a dead peer; the server's `lock_timeout` bounds waits for another
loader's locks and `idle_in_transaction_session_timeout` frees locks a stuck client holds. A
server that is alive but silent (a stopped postmaster and backends: the kernel still ACKs) is
caught by `StallGuard`: when a statement gets no answer and makes no progress for
`timeout_s`, it shuts the connection's socket down, so the blocked libpq call returns an error
instead of waiting forever. A lock wait, silent while another loader holds the lock, goes on
as long as the server answers a fresh connection's first message. Parameters the URI (or
PGOPTIONS / PGCONNECT_TIMEOUT) already sets win over these defaults.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
import stat
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote

from histetl.errors import (
    ConfigError,
    DatabaseTimeoutError,
    HistetlError,
    LoadError,
    TerminalLoadError,
    TransientLoadError,
)
from histetl.secrets import SECRET_KEYS, _split_uri, dsn_dict, is_dsn, redact, scrub
from histetl.targets.base import RetryPolicy, stopped_by_signal

if TYPE_CHECKING:
    from tenacity import Retrying

    from histetl.targets.postgres.client import Connection

_INT_PARAMS = (
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)


@dataclass(frozen=True)
class PgTarget:
    """Who and where, for messages (never the password)."""

    host: str  # host:port (or the socket directory)
    user: str | None
    dbname: str | None
    params: dict[str, str]  # every parameter given (URI query or DSN), decoded

    @property
    def label(self) -> str:
        who = [f"user {self.user}"] if self.user else []
        who += [f"database {self.dbname}"] if self.dbname else []
        return f"PostgreSQL at {self.host}" + (f" ({', '.join(who)})" if who else "")


def _bad(what: str, uri: str) -> ConfigError:
    return ConfigError(
        f"{what} in {redact(uri)}",
        where="--db",
        hint="write postgresql://user@host:port/dbname (port 1-65535), or a DSN like "
        "'host=h port=5432 dbname=d'",
    )


def _check_ports(ports: str, uri: str) -> None:
    for port in ports.split(","):
        if port == "":
            continue
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise _bad(f"port {port!r} is not a TCP port (1-65535)", uri)


def parse_target(uri: str) -> PgTarget:
    """Check a postgresql:// URI or key=value DSN as libpq would, before connecting.
    ConfigError (exit 2) for what libpq would refuse: a bad port, a non-integer timeout,
    an unparsable DSN."""
    hosts: list[str] = []
    ports = ""
    user: str | None
    dbname: str | None
    if is_dsn(uri):
        params = dsn_dict(uri)
        user, dbname = params.get("user"), params.get("dbname")
    else:
        parts = _split_uri(uri)
        if parts is None or parts.scheme not in ("postgresql", "postgres"):
            raise _bad("not a postgresql:// URI", uri)
        params = {key: unquote(raw) for key, raw, _s, _e in parts.query}
        user = unquote(parts.userinfo.split(":", 1)[0]) if parts.userinfo else None
        dbname = unquote(parts.path) if parts.path else None
        user, dbname = params.get("user", user), params.get("dbname", dbname)
        port_list = []
        for spec in parts.hosts.split(","):
            if spec.startswith("["):
                close = spec.find("]")
                if close < 0:
                    raise _bad("unterminated [IPv6] host", uri)
                host, rest = spec[1:close], spec[close + 1 :]
                if rest and not rest.startswith(":"):
                    raise _bad("unexpected text after an [IPv6] host", uri)
                port = rest[1:]
            else:
                host, _sep, port = spec.partition(":")
            hosts.append(unquote(host))
            port_list.append(port)
        _check_ports(",".join(port_list), uri)
        ports = ",".join(p for p in port_list if p)
    if "port" in params:
        _check_ports(params["port"], uri)
        ports = params["port"]
    for key in _INT_PARAMS:
        value = params.get(key)
        if value is not None and not value.strip().lstrip("-").isdigit():
            raise _bad(f"{key} {value!r} is not a whole number of seconds", uri)
    if "host" in params or "hostaddr" in params:
        hosts = (params.get("host") or params.get("hostaddr") or "").split(",")
    shown_hosts = [h or "localhost" for h in hosts if h] or ["localhost"]
    shown_ports = ports.split(",")[0] if ports else (os.environ.get("PGPORT") or "5432")
    host = (
        f"{shown_hosts[0]}:{shown_ports}"
        if not shown_hosts[0].startswith("/")
        else (shown_hosts[0])
    )
    if len(shown_hosts) > 1:
        host += f" (+{len(shown_hosts) - 1} more)"
    shown = {k: v for k, v in params.items() if k not in SECRET_KEYS}
    return PgTarget(host, user, dbname, shown)


def with_timeouts(uri: str, policy: RetryPolicy) -> str:
    """The URI/DSN with histetl's timeout defaults added where neither it nor the
    environment sets them."""
    target = parse_target(uri)
    given = target.params
    added: dict[str, str] = {}
    env_timeout = os.environ.get("PGCONNECT_TIMEOUT")
    if policy.connect_timeout_s > 0 and "connect_timeout" not in given and not env_timeout:
        added["connect_timeout"] = str(max(2, math.ceil(policy.connect_timeout_s)))
    if "keepalives" not in given:
        added.update(keepalives="1", keepalives_idle="30", keepalives_interval="10")
        added["keepalives_count"] = "3"
    if policy.timeout_s > 0 and "tcp_user_timeout" not in given:
        added["tcp_user_timeout"] = str(math.ceil(policy.timeout_s * 1000))
    options = given.get("options", os.environ.get("PGOPTIONS", ""))
    settings = []
    if policy.lock_timeout_s > 0 and "lock_timeout" not in options:
        settings.append(f"-c lock_timeout={math.ceil(policy.lock_timeout_s * 1000)}")
    if policy.timeout_s > 0 and "idle_in_transaction_session_timeout" not in options:
        ms = math.ceil(policy.timeout_s * 1000)
        settings.append(f"-c idle_in_transaction_session_timeout={ms}")
    if settings:
        added["options"] = " ".join([options, *settings]).strip()
    if not added:
        return uri
    if is_dsn(uri):
        return uri + "".join(f" {k}={_dsn_quote(v)}" for k, v in added.items())
    base, _sep, query = uri.partition("?")
    query, _hash, _fragment = query.partition("#")
    pairs = [p for p in query.split("&") if p and p.split("=", 1)[0] != "options"]
    if "options" not in added and "options" in given:
        pairs.append("options=" + quote(given["options"], safe=""))
    pairs += [f"{k}={quote(v, safe='')}" for k, v in added.items()]
    return base + "?" + "&".join(pairs)


def _dsn_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# -- driver errors ------------------------------------------------------------------------------

Kind = Literal[
    "transient", "auth", "missing", "permission", "parameter", "config", "lock", "timeout", "other"
]

_TRANSIENT_STATES = ("40P01", "40001", "57P01", "57P02", "57P03", "53300", "08")
_TRANSIENT_TEXT = (
    "connection refused",
    "could not connect",
    "server closed the connection",
    "terminating connection",
    "no connection to the server",
    "connection not open",
    "broken pipe",
    "timeout expired",
    "connection reset",
    "connection timed out",
    "deadlock detected",
    "could not serialize",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery",
    "too many clients",
    "could not receive data",
    "could not send data",
    "eof detected",
    "network is unreachable",
    "no route to host",
    "temporary failure in name resolution",
    "lost synchronization",
)


def classify(exc: BaseException) -> Kind:
    """Sort a driver error: only "transient" is worth retrying."""
    state = str(getattr(exc, "sqlstate", None) or "")
    text = str(exc).lower()
    if state == "55P03" or "lock timeout" in text:
        return "lock"
    if state == "57014" or "statement timeout" in text:
        return "timeout"
    if state in ("28P01", "28000") or any(
        s in text
        for s in (
            "password authentication failed",
            "authentication failed",
            "no password supplied",
            "fe_sendauth",
            "no pg_hba.conf entry",
            "pg_hba.conf rejects",
        )
    ):
        return "auth"
    if state.startswith("42501") or "permission denied" in text or "must be owner" in text:
        return "permission"
    if state == "3D000" or ("does not exist" in text and ("database" in text or "role" in text)):
        return "missing"
    if any(state.startswith(s) for s in _TRANSIENT_STATES) or any(
        s in text for s in _TRANSIENT_TEXT
    ):
        return "transient"
    if any(
        s in text
        for s in (
            "invalid uri",
            "invalid connection option",
            "invalid integer value",
            "invalid port",
            "invalid sslmode",
            "invalid value for parameter",
            "unrecognized configuration parameter",
        )
    ):
        return "parameter"
    if "could not translate host name" in text or "server does not support ssl" in text:
        return "config"
    return "other"


HINTS: dict[str, str] = {
    "auth": "check the user and password (PGPASSWORD, ~/.pgpass, or the URI) and the "
    "server's pg_hba.conf; retrying will not help",
    "missing": "create the database or role (createdb / CREATE ROLE), or fix the URI",
    "permission": "grant the user the privileges it needs (CREATE on the schema, INSERT on "
    "the tables), or connect as another user",
    "config": "fix the host, port or parameters in the URI",
    "parameter": "fix or remove that parameter of the URI (see libpq's connection parameters)",
    "lock": "another loader held the lock longer than --lock-timeout; rerun later (files "
    "already loaded are skipped) or raise --lock-timeout",
    "timeout": "a statement ran longer than the server's statement_timeout; raise it "
    "(options=-c statement_timeout=...) or load smaller files",
    "transient": "check that the server is up and reachable, then rerun",
}


# -- a watchdog for a server that stops answering -----------------------------------------------


def socket_fds() -> dict[int, int]:
    """This process's open sockets: fd -> inode (Linux /proc; empty elsewhere)."""
    found: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            with contextlib.suppress(OSError):
                info = os.fstat(fd)
                if stat.S_ISSOCK(info.st_mode):
                    found[fd] = info.st_ino
    return found


class StallGuard:
    """Shuts a connection's socket down when a guarded call makes no progress for its
    deadline, so libpq's blocking wait returns an error. `touch()` marks progress.

    A lock wait is silent by nature (the server answers when another loader lets go), so a
    watch with a longer `wait_s` asks, each time the deadline passes, whether the server
    answers the first step of a fresh connection on the same address (`server_answers`): a
    live one does within milliseconds and the wait goes on, up to `wait_s`; a stopped one
    does not, and the socket is shut down."""

    def __init__(self, before: dict[int, int]) -> None:
        new = {fd: ino for fd, ino in socket_fds().items() if before.get(fd) != ino}
        self._socket = next(iter(new.items())) if len(new) == 1 else None
        self._peer = _peer_of(self._socket[0]) if self._socket is not None else None
        self._lock = threading.Lock()
        self._deadline: float | None = None  # when the current silence becomes too long
        self._until: float | None = None  # a lock wait's end, however the server answers
        self._seconds = 0.0
        self._watch = 0  # which watch: an answer that comes late arms no other one
        self._armed = False  # a watch is on (none: the connection is idle, never shut down)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired = False

    @contextlib.contextmanager
    def watch(self, seconds: float, wait_s: float | None = None) -> Iterator[None]:
        """Guard the block: `seconds` of silence end it, or for a lock wait (`wait_s` longer
        than `seconds`, inf for no limit) silence while the server no longer answers."""
        if seconds <= 0 or self._socket is None:
            yield
            return
        now = time.monotonic()
        with self._lock:
            self._watch += 1
            self._armed = True
            self._seconds = seconds
            self._deadline = now + seconds
            self._until = now + wait_s if wait_s is not None and wait_s > seconds else None
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="histetl-pg-watch", daemon=True)
            self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._deadline = self._until = None
                self._armed = False

    def touch(self) -> None:
        with self._lock:
            if self._deadline is not None:
                self._deadline = time.monotonic() + self._seconds

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                now, watch = time.monotonic(), self._watch
                due = self._deadline is not None and now > self._deadline
                until, seconds = self._until, self._seconds
                ask = due and self._peer is not None and until is not None and now < until
                if due:
                    self._deadline = None
            if ask and self._peer is not None and server_answers(*self._peer, seconds):
                with self._lock:  # alive: a lock wait goes on, unless its watch ended
                    if watch == self._watch and self._armed and self._until is not None:
                        self._deadline = min(time.monotonic() + seconds, self._until)
            elif due:
                with self._lock:
                    current = watch == self._watch and self._armed
                if current:
                    self._fire()

    def _fire(self) -> None:
        if self._socket is None:
            return
        fd, ino = self._socket
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_ino != ino:  # libpq closed it and the fd was reused
                return
            self.fired = True
            dup = socket.socket(fileno=os.dup(fd))
            try:
                dup.shutdown(socket.SHUT_RDWR)
            finally:
                dup.close()

    def close(self) -> None:
        self._stop.set()
        self._socket = None


_SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # the protocol's first message: "SSL, or not?"
PROBE_TIMEOUT_S = 10.0


def _peer_of(fd: int) -> tuple[int, Any] | None:
    """The (address family, address) of the server a connection's socket talks to."""
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as dup:
        return dup.family, dup.getpeername()
    return None


def server_answers(family: int, address: Any, timeout_s: float) -> bool:
    """Whether the PostgreSQL server at `address` answers an SSLRequest (one byte, 'S' or
    'N', before any authentication) within `timeout_s` (at most PROBE_TIMEOUT_S). A stopped
    server or hung host accepts the TCP connection in the kernel and never answers. A live
    one answers within milliseconds (0.5-7 ms here) and logs no error for a connection that
    ends there (as for a client that declines SSL; `log_connections` shows it)."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(min(timeout_s, PROBE_TIMEOUT_S))
            probe.connect(address)
            probe.sendall(_SSL_REQUEST)
            probe.recv(1)  # an answer, or the server closing: either way it is there
            return True
    except OSError:  # refused, unreachable, or no answer in time
        return False


def connect_attempts(policy: RetryPolicy, label: str) -> Retrying:
    """Attempts at connecting (and setting up): only transient failures are tried again, up
    to policy.max_attempts, with capped and jittered exponential backoff between them."""
    from loguru import logger
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt
    from tenacity import wait_exponential_jitter as backoff

    return Retrying(
        retry=retry_if_exception_type(TransientLoadError),
        stop=stop_after_attempt(policy.max_attempts),
        wait=backoff(multiplier=0.2, max=policy.max_wait_s, jitter=0.2),
        before_sleep=lambda state: logger.warning(
            "{} unreachable (attempt {} of {}), retrying",
            label,
            state.attempt_number,
            policy.max_attempts,
        ),
        reraise=True,
    )


def connect(uri: str, policy: RetryPolicy, loading: bool = False) -> tuple[Connection, StallGuard]:
    """One connection attempt with histetl's timeouts; driver errors become LoadErrors
    (TransientLoadError only for what retrying may fix). Used by the sink (`loading`), the
    reader and the ledger pre-check."""
    target = parse_target(uri)
    conninfo = with_timeouts(uri, policy)
    from histetl.targets.postgres.client import Connection

    before = socket_fds()
    try:
        conn = Connection(conninfo, uri)
    except Exception as exc:  # the driver's error classes are not importable stably
        error = driver_error("cannot connect", exc, target, (uri, conninfo), loading=loading)
        raise error from None
    return conn, StallGuard(before)


def driver_error(
    what: str,
    exc: BaseException,
    target: PgTarget,
    uris: tuple[str, ...],
    stalled_s: float | None = None,
    loading: bool = False,
) -> HistetlError:
    """A one-line error naming host, user and database (never the password); `Interrupted`
    for a statement cancelled on request (`stopped_by_signal`). `loading`: a load's error,
    whose rerun skips the files already loaded."""
    text = str(exc).strip()
    message = text.splitlines()[0] if text else type(exc).__name__
    for uri in uris:
        message = scrub(message, uri)
    # the label already names host, user and database: keep only the server's reason
    message = re.sub(r"^(?:[A-Z_]+: )?\[libpq\] (?:Failed to connect: )?", "", message)
    message = re.sub(
        r'^connection to server (?:at|on) "[^"]*"(?:, port \d+)? failed: ', "", message
    )
    message = re.sub(r"^(?:FATAL|ERROR):\s+", "", message)
    if stalled_s is not None:
        return DatabaseTimeoutError(
            f"{what}: no answer from the server for {stalled_s:g} s (--db-timeout)",
            where=target.label,
            hint="the server stopped answering (stopped, overloaded or unreachable); check "
            "it and rerun (loaded files are skipped), or raise --db-timeout",
        )
    if stop := stopped_by_signal(exc):
        return stop
    kind = classify(exc)
    if kind == "transient":
        cls: type[LoadError] = (
            DatabaseTimeoutError if "timeout expired" in message else TransientLoadError
        )
        hint = HINTS["transient"] + (" (loaded files are skipped)" if loading else "")
        return cls(f"{what}: {message}", where=target.label, hint=hint)
    if kind == "parameter":  # libpq refused a parameter: a usage error, exit 2
        return ConfigError(f"{what}: {message}", where=target.label, hint=HINTS[kind])
    if kind in ("auth", "missing", "permission", "config"):
        return TerminalLoadError(f"{what}: {message}", where=target.label, hint=HINTS[kind])
    return LoadError(f"{what}: {message}", where=target.label, hint=HINTS.get(kind))
