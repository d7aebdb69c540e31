"""Running the CLI where permission bits matter, and tiny file systems for full-disk tests.

Tests run as root in CI, and root reads and writes whatever the mode bits say. A test about an
unreadable or unwritable path therefore runs the CLI as `nobody` (setpriv); when neither that
nor a non-root user is available it is skipped with the reason, never passed vacuously.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

HISTETL = [sys.executable, "-m", "histetl.cli"]
_DROP = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def _can_drop() -> bool:
    if shutil.which("setpriv") is None:
        return False
    probe = subprocess.run([*_DROP, sys.executable, "-c", "import histetl"], capture_output=True)
    return probe.returncode == 0


def unprivileged_prefix() -> list[str]:
    """The command prefix that runs as a user whom mode bits apply to (skips if none)."""
    if os.geteuid() != 0:
        return []
    if not _can_drop():
        pytest.skip("running as root and cannot drop to `nobody` (setpriv): mode bits not testable")
    return _DROP


@contextlib.contextmanager
def shared_dir() -> Iterator[Path]:
    """A folder every user may enter and write (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="histetl-shared-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        for p in [path, *path.rglob("*")]:  # give back what the test locked away
            with contextlib.suppress(OSError):
                if not p.is_symlink():
                    p.chmod(0o777)
        shutil.rmtree(path, ignore_errors=True)


def run_cli(
    *args: str | Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    unprivileged: bool = False,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    prefix = unprivileged_prefix() if unprivileged else []
    return subprocess.run(
        [*prefix, *HISTETL, *(str(a) for a in args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def tiny_fs(size: str = "64k") -> Iterator[Path]:
    """A tmpfs of `size` (root only; skipped where mounting is not allowed)."""
    path = Path(tempfile.mkdtemp(prefix="histetl-tinyfs-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        path.rmdir()
        pytest.skip(f"cannot mount a tmpfs for a full-disk test: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        # lazy: detached now even while a file on it is still open (e.g. by a finished
        # test's background thread), so the folder can go
        subprocess.run(["umount", "--lazy", str(path)], check=False)
        path.rmdir()


def fill(folder: Path) -> None:
    """Fill the file system of `folder` to the last byte."""
    with (folder / ".filler").open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)
    with (folder / ".filler").open("ab", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0")
