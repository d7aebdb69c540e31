"""histetl.source.databento.lock: one run per job (an fcntl lock per job under raw_dir/.locks),
all or none of a run's jobs, a bounded wait, and the holder named when busy."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from histetl.errors import ConfigError
from histetl.source.databento.lock import JobLock, LockBusyError


def test_the_lock_file_names_the_holder_and_a_second_lock_of_the_job_is_refused(
    tmp_path: Path,
) -> None:
    with JobLock(tmp_path, ["es"]) as held:
        assert held.paths == [tmp_path / ".locks" / "es.lock"]
        holder = (tmp_path / ".locks" / "es.lock").read_text(encoding="utf-8")
        assert holder.startswith(f"pid {os.getpid()} on {socket.gethostname()} since ")
        with pytest.raises(LockBusyError) as caught, JobLock(tmp_path, ["es"]):
            pass
    error = caught.value
    assert error.exit_code == 1
    assert error.where == str(tmp_path / ".locks")
    assert error.what == (
        f"another histetl run holds the lock of this job (es: {holder.strip()}); nothing was done"
    )
    assert "pass --wait SECONDS" in (error.hint or "")
    with JobLock(tmp_path, ["es"]):  # released on exit
        pass


def test_locks_of_other_jobs_go_ahead_side_by_side(tmp_path: Path) -> None:
    with JobLock(tmp_path, ["es"]), JobLock(tmp_path, ["nq", "cl"]) as other:
        assert [p.name for p in other.paths] == ["cl.lock", "nq.lock"]


def test_a_run_of_several_jobs_takes_all_their_locks_or_none(tmp_path: Path) -> None:
    with JobLock(tmp_path, ["nq"]):
        with pytest.raises(LockBusyError, match=r"\(nq: pid "):
            JobLock(tmp_path, ["es", "nq", "es"]).__enter__()
        with JobLock(tmp_path, ["es"]):  # es was taken, then given back when nq was busy
            pass


def test_a_wait_ends_when_the_holder_lets_go(tmp_path: Path) -> None:
    holder = JobLock(tmp_path, ["es"]).__enter__()
    threading.Timer(0.3, holder.__exit__, args=(None, None, None)).start()
    started = time.monotonic()
    with JobLock(tmp_path, ["es"], wait_s=30):
        waited = time.monotonic() - started
    assert 0.25 < waited < 10


def test_a_wait_gives_up_after_wait_s(tmp_path: Path) -> None:
    with JobLock(tmp_path, ["es"]):
        started = time.monotonic()
        with pytest.raises(LockBusyError), JobLock(tmp_path, ["es"], wait_s=0.3):
            pass
        assert 0.25 < time.monotonic() - started < 5


def test_a_raw_dir_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "raw").write_text("a file")
    with pytest.raises(ConfigError) as caught, JobLock(tmp_path / "raw", ["es"]):
        pass
    assert caught.value.message == (
        f"{tmp_path / 'raw' / '.locks' / 'es.lock'}: cannot create the lock file: Not a directory"
        "\n  hint: raw_dir must be a writable directory"
    )
