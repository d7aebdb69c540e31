"""Input files: paths, folders and globs expanded to readable DBN files, and their sha256.

Everything that cannot be read is a ConfigError before any work, so a run never fails half way
on a path the user could have fixed first.
"""

from __future__ import annotations

import glob
import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from histetl import objstore
from histetl.errors import ConfigError

DBN_SUFFIXES = (".dbn", ".dbn.zst")
Source = Path | str  # an input file: a local path, or an s3:// URL


def expand_paths(patterns: Iterable[str | Path]) -> list[Source]:
    """Files, directories (searched recursively for .dbn/.dbn.zst) and glob patterns; s3://
    URLs of objects or prefixes (searched recursively), kept as strings.

    Symlinks are followed, to files and to directories (a directory reached twice, e.g.
    through a link loop, is searched once). Any path that cannot be read is a ConfigError
    before any work: an unreadable file or directory, a broken symlink, or a DBN file that is
    not a regular file. Returns resolved paths, each once, in a stable order."""
    found: list[Source] = []
    for pattern in patterns:
        text = str(pattern)
        matches: list[Source]
        if isinstance(pattern, str) and objstore.is_s3(pattern):
            matches = [*objstore.list_files(pattern, DBN_SUFFIXES)]
        elif os.path.lexists(text):
            matches = [*_input_files(Path(text))]
        else:
            matches = []
            for hit in sorted(glob.glob(text, recursive=True)):
                matches += _input_files(Path(hit))
        if not matches:
            raise ConfigError(
                f"no DBN files match {text!r}",
                where="PATH",
                hint="give files, directories or globs of .dbn / .dbn.zst files",
            )
        found.extend(matches)
    return list(dict.fromkeys(found))


def _unreadable(path: Path, what: str, hint: str | None = None) -> ConfigError:
    return ConfigError(
        what,
        where=str(path),
        hint=hint or "fix its permissions or leave it out; nothing was loaded",
    )


def _stat(path: Path) -> os.stat_result:
    """stat through symlinks; a broken link or an unreadable path is a ConfigError."""
    try:
        return path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise _unreadable(
                path,
                f"broken symbolic link (to {os.readlink(path)})",
                "fix or remove the link; nothing was loaded",
            ) from None
        raise _unreadable(path, "no such file or directory", "check the path") from None
    except OSError as exc:
        raise _unreadable(path, f"cannot read: {exc.strerror or exc}") from None


def _input_files(path: Path) -> list[Path]:
    """The DBN files at `path`: itself (a file given by name or glob need not be called .dbn),
    or every .dbn/.dbn.zst under it (a directory)."""
    info = _stat(path)
    if stat.S_ISDIR(info.st_mode):
        return _walk(path, set())
    return [_readable_file(path, info)]


def _readable_file(path: Path, info: os.stat_result) -> Path:
    if not stat.S_ISREG(info.st_mode):
        raise _unreadable(
            path,
            "not a regular file (a FIFO, socket or device)",
            "give DBN files; nothing was loaded",
        )
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise _unreadable(path, f"cannot read: {exc.strerror or exc}") from None
    return path.resolve()


def _walk(directory: Path, seen: set[tuple[int, int]]) -> list[Path]:
    info = _stat(directory)
    if (info.st_dev, info.st_ino) in seen:  # a link loop, or a folder linked twice
        return []
    seen.add((info.st_dev, info.st_ino))
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        raise _unreadable(directory, f"cannot read folder: {exc.strerror or exc}") from None
    files: list[Path] = []
    for entry in entries:
        path = Path(entry.path)
        if not (entry.is_symlink() or entry.is_dir(follow_symlinks=False) or _is_dbn(path)):
            continue  # an ordinary file that is not DBN
        child = _stat(path)
        if stat.S_ISDIR(child.st_mode):
            files += _walk(path, seen)
        elif _is_dbn(path):
            files.append(_readable_file(path, child))
    return files


def _is_dbn(path: Path) -> bool:
    return path.name.endswith(DBN_SUFFIXES)


_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}


def sha256_file(path: Source) -> str:
    """The file's sha256, computed once per process for an unchanged file (same inode, size
    and mtime): the ledger pre-check and the pipeline both need it. An s3:// object's is
    computed each time, streamed."""
    if isinstance(path, str):
        digest = hashlib.sha256()
        with objstore.open_file(path)[0] as remote:
            while chunk := remote.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()
    with path.open("rb") as handle:
        info = os.fstat(handle.fileno())
        key = (str(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        if key not in _DIGESTS:
            digest = hashlib.sha256()
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
            _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]
