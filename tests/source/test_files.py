"""histetl.source.files: paths, folders, globs and s3:// URLs expanded to readable DBN files
(anything unreadable is a ConfigError before any work), and their sha256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from histetl.errors import ConfigError
from histetl.source.files import expand_paths, sha256_file
from tests.pipeline.test_replay import small
from tests.support.s3server import S3Server


def test_expand_paths_follows_symlinked_folders_and_files(tmp_path: Path) -> None:
    elsewhere = small(tmp_path / "elsewhere" / "a.dbn")
    other = small(tmp_path / "other" / "b.dbn.zst", seed=1)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "linked").symlink_to(elsewhere.parent, target_is_directory=True)
    (raw / "b.dbn.zst").symlink_to(other)

    assert expand_paths([raw]) == [other.resolve(), elsewhere.resolve()]


def test_expand_paths_when_symlinks_loop_searches_each_folder_once(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    f = small(raw / "sub" / "a.dbn")
    (raw / "sub" / "up").symlink_to(raw, target_is_directory=True)  # raw/sub/up/sub/up/...
    (raw / "again").symlink_to(raw / "sub", target_is_directory=True)

    assert expand_paths([raw]) == [f.resolve()]


def test_expand_paths_when_a_symlink_is_broken_fails_naming_it(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    small(raw / "a.dbn")
    (raw / "gone.dbn").symlink_to(tmp_path / "deleted.dbn")
    with pytest.raises(ConfigError, match="broken symbolic link") as caught:
        expand_paths([raw])
    assert caught.value.where == str(raw / "gone.dbn")
    assert caught.value.exit_code == 2


def test_expand_paths_when_a_dbn_file_is_a_fifo_fails_instead_of_hanging(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    small(raw / "a.dbn")
    os.mkfifo(raw / "pipe.dbn")
    with pytest.raises(ConfigError, match="not a regular file"):
        expand_paths([raw])


def test_expand_paths_of_a_folder_finds_dbn_files_at_any_depth_sorted_and_skips_the_rest(
    tmp_path: Path,
) -> None:
    b = small(tmp_path / "raw" / "b.dbn")
    a = small(tmp_path / "raw" / "z" / "a.dbn.zst", seed=1)
    (tmp_path / "raw" / "notes.txt").write_text("not DBN")
    (tmp_path / "raw" / "a.dbn.zst.manifest.json").write_text("{}")

    assert expand_paths([tmp_path / "raw"]) == [b.resolve(), a.resolve()]


def test_expand_paths_takes_a_file_named_as_it_is_and_lists_each_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = small(tmp_path / "export.bin")  # given by name: need not be called .dbn
    other = small(tmp_path / "raw" / "x" / "o.dbn", seed=1)
    monkeypatch.chdir(tmp_path)

    found = expand_paths(["export.bin", "raw/**/*.dbn", str(other), tmp_path / "raw"])

    assert found == [named.resolve(), other.resolve()]
    assert all(isinstance(p, Path) and p.is_absolute() for p in found)


@pytest.mark.parametrize("pattern", ["nope/*.dbn", "missing.dbn"])
def test_expand_paths_when_nothing_matches_names_the_pattern(
    pattern: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        expand_paths([pattern])
    assert caught.value.message == (
        f"PATH: no DBN files match {pattern!r}\n"
        "  hint: give files, directories or globs of .dbn / .dbn.zst files"
    )


def test_expand_paths_of_a_folder_without_dbn_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ConfigError, match="no DBN files match"):
        expand_paths([tmp_path / "empty"])


def test_sha256_file_is_the_files_digest_and_follows_a_change(tmp_path: Path) -> None:
    path = small(tmp_path / "a.dbn")
    first = sha256_file(path)
    assert first == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha256_file(path) == first  # the second call is served from the cache

    small(path, seed=7)  # new content: size or mtime change, so a new digest
    os.utime(path, ns=(1, 1))
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest() != first


def test_expand_paths_and_sha256_of_an_s3_prefix(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    bucket, client = s3_server.bucket(), s3_server.client()
    local = small(tmp_path / "t.dbn")
    client.upload_file(str(local), bucket, "raw/deep/t.dbn")
    client.put_object(Bucket=bucket, Key="raw/notes.txt", Body=b"not DBN")

    found = expand_paths([f"s3://{bucket}/raw/"])

    assert found == [f"s3://{bucket}/raw/deep/t.dbn"]
    assert sha256_file(found[0]) == hashlib.sha256(local.read_bytes()).hexdigest()
