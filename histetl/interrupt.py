"""Stopping a run on SIGINT or SIGTERM, and worker processes that die with their parent.

One handler sets a cancel flag (`CANCEL`). The pipeline checks it between batches and
between files: it rolls back the file in progress, starts no other and raises `Interrupted`,
whose exit code is 128 + the signal number (130 for SIGINT, 143 for SIGTERM). A second signal,
or a stop that takes longer than the grace period (a database call that does not return),
ends the process at once; the database then rolls back the open transaction, as after a
crash, so a rerun still converges.

Work that has no batch boundaries (a download) runs under `CANCEL.raising()`: there a
signal raises `Interrupted` at once, and the work cleans up on the way out.

Workers of `--workers N` start with `init_worker`: they stop like the parent on SIGINT or
SIGTERM, when the parent sets the shared stop event, and when the parent dies (Linux:
PR_SET_PDEATHSIG; everywhere: a thread that polls the parent's pid).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

from histetl.errors import HistetlError

GRACE_S = 10.0  # how long a requested stop may take before the process just exits
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_PR_SET_PDEATHSIG = 1


class Interrupted(HistetlError):
    """The run was stopped by a signal; `progress` says what was done before."""

    def __init__(self, signum: int, progress: str = "") -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        done = f": {progress}" if progress else ""
        super().__init__(
            f"interrupted by {signal.Signals(signum).name}{done}; "
            "rerun the same command to continue (what is loaded is skipped)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (Interrupted, (self.signum,))


class _StopNow(BaseException):
    """Raised by the handler inside `Cancel.raising()`; a BaseException, like
    KeyboardInterrupt, so no `except Exception` on the way (a client library's) swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Cancel:
    """The cancel flag: set by a signal handler (or a worker's watchdog), read by the
    pipeline. Only a plain attribute is written, so setting it from a handler is safe."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._raising = 0

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
        if self._raising:
            raise _StopNow(self.signum)

    def stopped(self, signum: int) -> Interrupted:
        """The stop of a signal a library took for itself (ADBC and Polars answer SIGINT
        during their calls by cancelling them, and histetl's handler never sees it): recorded
        as if the handler had, so that nothing else starts."""
        if self.signum is None:
            self.signum = signum
        return Interrupted(self.signum)

    def check(self) -> None:
        """Raise `Interrupted` if a stop was requested."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    def sleep(self, seconds: float) -> None:
        """Sleep, but raise `Interrupted` within 0.1 s of a stop request."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.check()
            time.sleep(min(left, 0.1))
        self.check()

    @contextlib.contextmanager
    def raising(self) -> Iterator[None]:
        """Inside the block a signal interrupts the main thread where it is, like
        KeyboardInterrupt (the code inside must clean up on BaseException); the block then
        raises `Interrupted`. Checks the flag first: no work starts after a stop request."""
        self.check()
        self._raising += 1
        try:
            yield
        except _StopNow as stop:
            raise Interrupted(stop.signum) from None
        finally:
            self._raising -= 1

    def reset(self) -> None:
        self.signum = None


CANCEL = Cancel()


def _exit_now(signum: int, why: str) -> None:
    message = (
        f"\nerror: interrupted by {signal.Signals(signum).name}: {why}; exiting now, the "
        "database rolls back the file in progress; rerun the same command to continue\n"
    )
    os.write(2, message.encode())  # not sys.stderr: this may run inside a signal handler
    os._exit(128 + signum)


def _deadline(done: threading.Event, grace_s: float) -> None:
    """Once a stop is requested, give it `grace_s` seconds, then end the process."""
    while not done.wait(0.1):
        if CANCEL.signum is not None:
            if not done.wait(grace_s):
                _exit_now(CANCEL.signum, f"still stopping after {grace_s:g}s")
            return


@contextlib.contextmanager
def stop_on_signals(grace_s: float = GRACE_S) -> Iterator[Cancel]:
    """SIGINT and SIGTERM request a stop for the duration of the block (main thread only).
    The first signal sets the flag; a second signal, or `grace_s` seconds without the stop
    finishing, ends the process. The handler only sets the flag (and raises inside
    `Cancel.raising()`): no locks, no threads started in it."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if CANCEL.requested:
            _exit_now(signum, "second signal")
        CANCEL.request(signum)

    CANCEL.reset()
    if threading.current_thread() is not threading.main_thread():  # handlers: main thread only
        yield CANCEL
        return
    done = threading.Event()
    threading.Thread(
        target=_deadline, args=(done, grace_s), name="histetl-deadline", daemon=True
    ).start()
    previous = {sig: signal.signal(sig, handle) for sig in _SIGNALS}
    try:
        yield CANCEL
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        done.set()
        CANCEL.reset()


# -- worker processes ---------------------------------------------------------------------------

_BUSY = threading.Event()  # set while a worker processes a file


@contextlib.contextmanager
def busy() -> Iterator[None]:
    """Mark the worker busy (a file in progress) for its watchdog."""
    _BUSY.set()
    try:
        yield
    finally:
        _BUSY.clear()


def init_worker(parent_pid: int, stop: Any, grace_s: float = GRACE_S) -> None:
    """ProcessPoolExecutor initializer: the worker stops on SIGINT/SIGTERM, when `stop` (a
    multiprocessing Event) is set, and when its parent dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    for sig in _SIGNALS:
        signal.signal(sig, lambda signum, frame: CANCEL.request(signum))
    threading.Thread(
        target=_watch, args=(parent_pid, stop, grace_s), name="histetl-watchdog", daemon=True
    ).start()


def _watch(parent_pid: int, stop: Any, grace_s: float) -> None:
    """Request a stop when the parent dies or asks; then exit the process if it is orphaned
    and idle, or if the file in progress does not stop within `grace_s`."""
    while os.getppid() == parent_pid and not stop.wait(0.2) and not CANCEL.requested:
        pass
    if CANCEL.signum is None:  # not request(): this is not the main thread
        CANCEL.signum = signal.SIGTERM
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        orphaned = os.getppid() != parent_pid
        if orphaned and not _BUSY.is_set():
            os._exit(128 + signal.SIGTERM)
        time.sleep(0.05)
    if _BUSY.is_set() or os.getppid() != parent_pid:
        os._exit(128 + signal.SIGTERM)
