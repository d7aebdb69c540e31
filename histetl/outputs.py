"""Every file histetl writes for a user (run and verify reports, `query -o`) goes through here.

- Checked before any work (`check_output`, `check_output_dir`): the folder exists or can be
  made and is writable, the path is not a folder. A bad path is a usage error (exit 2).
- A regular file is written atomically: a temporary file in the same folder, renamed over the
  target when complete, so a reader never sees half a report and a failed write leaves the old
  file as it was. A symlink is written through to its target (the link stays a link); a FIFO
  or a device is written to directly, never replaced.
- Temporary files a killed writer left beside the target (its pid is gone) are removed.
- Any I/O failure while writing (a full disk, a vanished folder) becomes one `OutputError`
  naming the file (exit 1), never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from histetl.errors import ConfigError, HistetlError

TMP_SUFFIX = ".tmp"


class OutputError(HistetlError):
    """An output file could not be written (exit 1)."""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def make_dir(path: Path, what: str, hint: str) -> None:
    """Create a folder a target writes into; an unusable path is one line naming `what`."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create {what}: {exc.strerror}", where=str(path), hint=hint
        ) from None


def check_output_dir(path: Path, where: str) -> None:
    """Before work: `path` is a folder (or can be created) that histetl may write into."""
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"{path} is not a folder", where=where, hint="give a folder (it is created if missing)"
        )
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise ConfigError(
            f"cannot create {path}: {ancestor} is not a folder",
            where=where,
            hint="give a path under an existing folder",
        )
    problem = _probe(ancestor)
    if problem is None and not os.access(ancestor, os.W_OK | os.X_OK):
        problem = "permission denied"
    if problem is not None:
        raise ConfigError(
            f"folder {ancestor} is not writable: {problem}",
            where=where,
            hint="choose a folder you can write to, or fix its permissions",
        )


def _probe(folder: Path) -> str | None:
    """Create and remove a file in `folder` (permission bits do not stop root, a read-only
    or pseudo file system does); the reason when that fails."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".histetl-probe-")
    except OSError as exc:
        return _reason(exc)
    os.close(fd)
    os.unlink(name)
    return None


def _target(path: Path, where: str, error: type[HistetlError]) -> tuple[Path, int | None]:
    """What `path` names (a symlink's target) and its mode, None when it does not exist yet;
    a folder, or a path that cannot be looked at, is an `error`."""
    try:
        target = path.resolve() if path.is_symlink() else path
        mode: int | None = target.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise error(f"cannot use {path}: {_reason(exc)}", where=where) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise error(f"{path} is a folder", where=where, hint="give a file name")
    return target, mode


def check_output(path: Path, where: str) -> None:
    """Before work: `path` can be written (a new or regular file in a writable folder, or a
    FIFO or device we may write to)."""
    target, mode = _target(path, where, ConfigError)
    if mode is not None and not stat.S_ISREG(mode):
        if not os.access(target, os.W_OK):
            raise ConfigError(f"{path} is not writable", where=where)
        return
    check_output_dir(target.parent, where)


def sidecar_path(html: Path) -> Path:
    """The quality page's figures beside it: `report.html` -> `report.figures.json`."""
    stem = html.name[: -len(html.suffix)] if html.suffix else html.name
    return html.with_name(stem + ".figures.json")


def check_outputs(
    outputs: Iterable[tuple[str, Path | None]], inputs: Iterable[tuple[str, Path]] = ()
) -> None:
    """Before work: each output (option, path) can be written (`check_output`), and no two
    of them, nor an output and an input, are one file (one would silently overwrite the
    other). `--html` stands for its page and the page's figures sidecar."""
    seen: dict[str, str] = {os.path.realpath(path): where for where, path in inputs}
    for where, path in outputs:
        if path is None:
            continue
        files = [(where, path)]
        if where == "--html":
            files.append(("--html's figures sidecar", sidecar_path(path)))
        for name, file in files:
            check_output(file, where)
            real = os.path.realpath(file)
            if real in seen:
                raise ConfigError(
                    f"{seen[real]} and {name} are the same file, {file}",
                    where=where,
                    hint="give each its own file name",
                )
            seen[real] = name


@contextlib.contextmanager
def open_output(path: Path, where: str = "output") -> Iterator[IO[bytes]]:
    """A binary handle for `path` (see the module docstring for how each kind is written).
    The file appears only when the block ends without an error."""
    target, mode = _target(path, where, OutputError)
    if mode is not None and not stat.S_ISREG(mode):
        with _through(path, target, where) as handle:
            yield handle
        return
    tmp = target.with_name(f".{_tmp_stem(target)}.{os.getpid()}{TMP_SUFFIX}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(target)
        with tmp.open("wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, stat.S_IMODE(mode))
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(
            f"cannot write {path}: {_reason(exc)}",
            where=where,
            hint="check the folder and the free space, or choose another file; "
            "an existing file is left unchanged",
        ) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


_NAME_MAX = 255  # bytes in a file name (Linux, macOS)
_STEM_MAX = _NAME_MAX - len(f"..{2**22}{TMP_SUFFIX}")  # room for the dots, a pid, the suffix


def _tmp_stem(target: Path) -> str:
    """The target's name in its temporary file's name: itself, or for a name too long to
    carry the pid and suffix, its start and a digest of the whole (still unique)."""
    name = target.name
    raw = name.encode()
    if len(raw) <= _STEM_MAX:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:12]
    return raw[: _STEM_MAX - 13].decode(errors="ignore") + "~" + digest


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a writer that may still be at work)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _remove_stale_temps(target: Path) -> None:
    """Temporary files of `target` that a killed writer left (its pid is gone)."""
    stem = _tmp_stem(target)
    pattern = re.compile(re.escape(f".{stem}.") + r"(\d+)" + re.escape(TMP_SUFFIX) + "$")
    for candidate in target.parent.glob(f".{glob.escape(stem)}.*{TMP_SUFFIX}"):
        match = pattern.match(candidate.name)
        if match and not pid_alive(int(match[1])):
            with contextlib.suppress(OSError):
                candidate.unlink()


@contextlib.contextmanager
def _through(path: Path, target: Path, where: str) -> Iterator[IO[bytes]]:
    """A FIFO or device, opened for writing as it is. A FIFO without a reader is an error,
    not a hang."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        what = "no process reads the FIFO" if exc.errno == errno.ENXIO else _reason(exc)
        raise OutputError(f"cannot write {path}: {what}", where=where) from None
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_reason(exc)}", where=where) from None


def write_bytes(path: Path, data: bytes, where: str = "output") -> None:
    with open_output(path, where) as handle:
        handle.write(data)


def write_json(path: Path, data: Any, where: str = "--report") -> None:
    """The one JSON writer for reports."""
    write_bytes(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"), where)
