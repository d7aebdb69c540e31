"""One run at a time per job: an fcntl lock on `raw_dir/.locks/<job>.lock` for each job, held for
the whole fetch and load and released when the process ends (even by a crash). A second run of
the same job waits up to `lock_wait_s`, then gives up with `LockBusyError` (the CLI reports it
and exits 0: the running one does the work). Runs of other jobs go ahead side by side.

S3 has no lock a crashed process releases, so for an s3:// raw_dir the lock files live in the
raw_dir's local folder (`download.local_dir`: the user's state folder, keyed by the URL). They
keep runs on this machine apart; runs on two machines are not (see the README)."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import socket
from pathlib import Path
from typing import IO

from tenacity import (
    Retrying,
    retry_if_result,
    stop_after_delay,
    wait_fixed,
)

from histetl.errors import ConfigError, HistetlError
from histetl.interrupt import CANCEL
from histetl.jobs import RawDir
from histetl.source.databento.download import local_dir

LOCK_DIR = ".locks"


class LockBusyError(HistetlError):
    """Another run holds the raw_dir lock."""


# -- the lock ---------------------------------------------------------------------------------


class JobLock:
    """Exclusive fcntl locks on <local_dir>/.locks/<job>.lock, one per job, released when the
    process ends (even by a crash). Runs of different jobs go ahead side by side."""

    def __init__(self, raw_dir: RawDir, jobs: list[str], wait_s: float = 0.0) -> None:
        folder = local_dir(raw_dir) / LOCK_DIR
        self.paths = [folder / f"{name}.lock" for name in sorted(set(jobs))]
        self.hint = (
            "raw_dir must be a writable directory"
            if isinstance(raw_dir, Path)
            else "the locks of an s3:// raw_dir live in histetl's state folder "
            "($XDG_STATE_HOME/histetl), which must be writable"
        )
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
                    hint=self.hint,
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
