"""Throw-away PostgreSQL servers for tests, built from the machine's own binaries.

``start_postgres()`` runs ``initdb`` in a fresh temporary directory and starts ``postgres``
on 127.0.0.1 with a free port (trust auth, fsync off), returning a :class:`PgServer`.
As root, ``initdb``/``postgres`` run as the ``postgres`` user (they refuse to run as root).
With ``HISTETL_TEST_PG_URI`` set, that server is used instead and nothing is started.
``start_postgres(private=True)`` always starts one (for fault tests that stop, pause or
restart their server: ``pause()`` SIGSTOPs the postmaster and its backends, ``resume()``
SIGCONTs them, ``stop_server()`` / ``start_server()`` stop and start it on the same port and
data). ``password=`` makes it require SCRAM passwords (user postgres, that password).

``fresh_schema(uri)`` creates a uniquely named schema, yields a URI whose connections
have ``search_path=<schema>,public`` (via the libpq ``options`` parameter, understood by
psycopg and adbc_driver_postgresql alike) and drops the schema afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

PG_URI_ENV = "HISTETL_TEST_PG_URI"
PG_BINDIR_ENV = "HISTETL_TEST_PG_BINDIR"

_FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "40",
    "shared_buffers": "64MB",
    "max_wal_size": "1GB",
    "checkpoint_timeout": "30min",
    "autovacuum": "off",
    "jit": "off",
    "log_min_messages": "warning",
    "logging_collector": "off",
    "timezone": "UTC",
}


@dataclasses.dataclass
class PgServer:
    """A PostgreSQL-protocol server for tests; ``stop()`` is idempotent."""

    uri: str  # postgresql://user@127.0.0.1:PORT/dbname
    host: str
    port: int
    external: bool = False  # True when taken from an environment variable
    # False for the PGlite server: it serves one connection at a time (a second one waits)
    concurrent_connections: bool = True
    _stopper: Callable[[], None] | None = dataclasses.field(default=None, repr=False)
    _control: _Control | None = dataclasses.field(default=None, repr=False)

    def _ctl(self) -> _Control:
        if self._control is None:
            raise RuntimeError("only a private server (start_postgres(private=True)) can do this")
        return self._control

    def pids(self) -> list[int]:
        """The postmaster and every process it started (backends, background workers)."""
        return _family(self._ctl().proc.pid)

    def pause(self) -> None:
        """SIGSTOP the whole server: it accepts TCP connections (the kernel does) but never
        answers, like a hung host."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def stop_server(self) -> None:
        """Fast shutdown, keeping the data directory (start_server() brings it back)."""
        ctl = self._ctl()
        if ctl.proc.poll() is None:
            ctl.proc.send_signal(signal.SIGINT)
            ctl.proc.wait(timeout=30)

    def start_server(self, timeout: float = 30.0) -> None:
        ctl = self._ctl()
        ctl.proc = subprocess.Popen(
            ctl.args,
            cwd=ctl.root,
            stdin=subprocess.DEVNULL,
            stdout=ctl.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **ctl.as_postgres,
        )
        if not _wait_ready(ctl.proc, ctl.root / "data", timeout, restarted=True):
            raise RuntimeError("postgres did not restart")

    def stop(self) -> None:
        stopper, self._stopper = self._stopper, None
        if stopper is not None:
            stopper()

    def __enter__(self) -> PgServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclasses.dataclass
class _Control:
    proc: subprocess.Popen[Any]
    args: list[str]
    root: Path
    log: Any
    as_postgres: dict[str, Any]


def _family(main: int) -> list[int]:
    """`main` and its child processes."""
    found = [main]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == main:
                found.append(int(entry))
    return found


def _stop_control(ctl: _Control) -> None:
    for pid in _family(ctl.proc.pid):  # a paused server cannot shut down
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    stop_process(ctl.proc, ctl.root, ctl.log)


def server_from_uri(uri: str) -> PgServer:
    """Wrap an already running server (e.g. from docker compose); stop() does nothing."""
    parts = urlsplit(uri)
    return PgServer(
        uri=uri, host=parts.hostname or "localhost", port=parts.port or 5432, external=True
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def find_pg_bindir() -> Path:
    """Directory with initdb and postgres: $HISTETL_TEST_PG_BINDIR, pg_config, or a guess."""
    candidates: list[str] = []
    if os.environ.get(PG_BINDIR_ENV):
        candidates.append(os.environ[PG_BINDIR_ENV])
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            )
            candidates.append(out.stdout.strip())

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", path)[:2])

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for c in candidates:
        p = Path(c)
        if (p / "initdb").is_file() and (p / "postgres").is_file():
            return p
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, postgres) not found: install them "
        "(Debian: apt-get install postgresql), set "
        f"{PG_BINDIR_ENV}=/path/to/bin, or point {PG_URI_ENV} at a running server"
    )


def _run_as_kwargs() -> dict[str, Any]:
    """subprocess kwargs that drop root to the postgres user (no-op for non-root)."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "running as root but there is no 'postgres' user to run initdb/postgres as"
        ) from None
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": pw.pw_dir,
        "USER": "postgres",
        "LOGNAME": "postgres",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "env": env}


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _make_root(tmp_root: Path | None, as_postgres: dict[str, Any]) -> Path:
    base = Path(tmp_root) if tmp_root is not None else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="histetl-pg-", dir=base))
    if as_postgres:
        os.chown(root, as_postgres["user"], as_postgres["group"])
        # The postgres user must be able to reach the directory (pytest's tmp dirs are 0700).
        ok = subprocess.run(
            ["test", "-w", str(root), "-a", "-x", str(root)], check=False, **as_postgres
        )
        if ok.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            if tmp_root is None:
                raise RuntimeError(f"user postgres cannot write to {base}")
            return _make_root(None, as_postgres)
    return root


def stop_process(
    proc: subprocess.Popen[Any],
    root: Path,
    log: Any,
    sig: signal.Signals = signal.SIGINT,
    timeout: float = 15,
) -> None:
    """Stop a test server (SIGINT is PostgreSQL's fast shutdown), then remove its files."""
    try:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def start_postgres(
    tmp_root: Path | None = None,
    *,
    timeout: float = 30.0,
    private: bool = False,
    password: str | None = None,
) -> PgServer:
    """Start a private PostgreSQL server (or wrap $HISTETL_TEST_PG_URI unless `private`).

    Raises RuntimeError with a clear message if the server binaries are missing or the
    server does not come up (the message includes the tail of its log).
    """
    env_uri = os.environ.get(PG_URI_ENV)
    if env_uri and not private and password is None:
        return server_from_uri(env_uri)

    bindir = find_pg_bindir()
    as_postgres = _run_as_kwargs()
    root = _make_root(tmp_root, as_postgres)
    data, sockdir = root / "data", root / "sock"
    auth = ["-A", "trust"]
    try:
        sockdir.mkdir()
        if as_postgres:
            os.chown(sockdir, as_postgres["user"], as_postgres["group"])
        if password is not None:
            pwfile = root / "pwfile"
            pwfile.write_text(password + "\n")
            if as_postgres:
                os.chown(pwfile, as_postgres["user"], as_postgres["group"])
            auth = ["-A", "scram-sha-256", f"--pwfile={pwfile}"]
        init = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                *auth,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            **as_postgres,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stderr[-3000:]}")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise

    host = "127.0.0.1"
    last_error = ""
    for _attempt in range(3):
        port = free_port(host)
        args = [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sockdir)]
        args += ["-c", f"listen_addresses={host}"]
        for k, v in _FAST_SETTINGS.items():
            args += ["-c", f"{k}={v}"]
        log_path = root / f"postgres-{port}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed by stop_process
        proc = subprocess.Popen(
            args,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **as_postgres,
        )
        if _wait_ready(proc, data, timeout):
            uri = f"postgresql://postgres@{host}:{port}/postgres"
            ctl = _Control(proc, args, root, log, as_postgres)
            stopper = weakref.finalize(ctl, _stop_control, ctl)
            return PgServer(uri=uri, host=host, port=port, _stopper=stopper, _control=ctl)
        last_error = _tail(log_path)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=15)
        log.close()
        if "could not bind" not in last_error and "in use" not in last_error:
            break
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"postgres did not start; log tail:\n{last_error}")


def _wait_ready(
    proc: subprocess.Popen[bytes], data: Path, timeout: float, restarted: bool = False
) -> bool:
    """Wait until postmaster.pid reports "ready" (what pg_ctl -w does)."""
    deadline = time.monotonic() + timeout
    pidfile = data / "postmaster.pid"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError):
            lines = pidfile.read_text().splitlines()
            mine = not restarted or (lines and lines[0].strip() == str(proc.pid))
            if mine and len(lines) >= 8 and lines[7].strip() == "ready":
                return True
        time.sleep(0.02)
    return False


# --------------------------------------------------------------------------- schemas


def with_search_path(uri: str, *schemas: str) -> str:
    """Return uri with ``options=-csearch_path=...`` added (kept alongside other options)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    setting = f"-csearch_path={','.join(schemas)}"
    existing = [v for k, v in query if k == "options"]
    query = [(k, v) for k, v in query if k != "options"]
    query.append(("options", " ".join([*existing, setting])))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote, safe="")))


def _admin_execute(uri: str, sql: str) -> None:
    import adbc_driver_postgresql.dbapi as pg_dbapi

    with pg_dbapi.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql)


@contextlib.contextmanager
def fresh_schema(uri: str, prefix: str = "t") -> Iterator[tuple[str, str]]:
    """Create a unique schema; yield (uri with search_path=<schema>,public, schema name).

    The schema is dropped (CASCADE) afterwards.
    """
    tag = re.sub(r"[^a-z0-9_]", "_", prefix.lower())[:30] or "t"
    schema = f"{tag}_{uuid.uuid4().hex[:12]}"
    _admin_execute(uri, f'CREATE SCHEMA "{schema}"')
    try:
        yield with_search_path(uri, schema, "public"), schema
    finally:
        _admin_execute(uri, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
