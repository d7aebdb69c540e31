"""The one output writer: atomic for regular files, through symlinks and FIFOs (never replacing
them), a clear error for a full disk or a bad path."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from histetl.errors import ConfigError
from histetl.outputs import (
    OutputError,
    check_output,
    check_output_dir,
    check_outputs,
    open_output,
    write_json,
)


def test_regular_file_is_replaced_atomically_and_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")
    target.chmod(0o640)
    write_json(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_failure_inside_the_block_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")

    def write_half() -> None:
        with open_output(target) as handle:
            handle.write(b"half")
            raise RuntimeError("query failed")

    with pytest.raises(RuntimeError):
        write_half()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_symlink_is_written_through_to_its_target_and_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real" / "report.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_json(link, [1])
    assert link.is_symlink()
    assert real.read_text() == "[\n  1\n]\n"


def test_fifo_is_written_through_and_never_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    expected = b'{\n  "x": 1\n}\n'
    # Linux: O_RDWR opens a FIFO at once, so the reader is there before the writer comes
    fd = os.open(fifo, os.O_RDWR)
    try:
        write_json(fifo, {"x": 1})
        got = b""
        while len(got) < len(expected):
            got += os.read(fd, 1024)
    finally:
        os.close(fd)
    assert got == expected
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_fifo_without_a_reader_is_an_error_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="no process reads the FIFO"):
        write_json(fifo, {})
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_full_device_is_one_clear_error() -> None:
    with pytest.raises(OutputError, match="No space left on device") as caught:
        write_json(Path("/dev/full"), {"x": "y" * 100_000})
    assert caught.value.exit_code == 1


def test_a_folder_as_output_file_is_refused_before_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        check_output(tmp_path, "--report")


def test_output_under_a_file_is_refused_before_work(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match=r"Not a directory|is not a folder"):
        check_output(tmp_path / "f" / "r.json", "--report")
    with pytest.raises(ConfigError, match="is not a folder"):
        check_output_dir(tmp_path / "f", "--quarantine-dir")


def test_missing_folders_of_an_output_are_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "r.json"
    check_output(target, "--report")
    write_json(target, {})
    assert target.read_text() == "{}\n"


def test_temporary_files_of_a_killed_writer_are_removed_and_a_live_ones_kept(
    tmp_path: Path,
) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = tmp_path / f".r.json.{proc.pid}.tmp"
    live = tmp_path / f".r.json.{os.getppid()}.tmp"
    other = tmp_path / f".other.json.{proc.pid}.tmp"
    for p in (dead, live, other):
        p.write_text("half")
    write_json(tmp_path / "r.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "r.json"])


def test_a_name_near_the_file_name_limit_is_written_and_one_past_it_is_one_error(
    tmp_path: Path,
) -> None:
    """A legal 250-byte name could not be written (its temporary name was past 255 bytes),
    and the clean-up of that temporary raised an OSError traceback."""
    long = tmp_path / ("é" * 100 + "x" * 46 + ".json")  # 250 bytes in UTF-8
    write_json(long, {"a": 1})
    assert long.read_text() == '{\n  "a": 1\n}\n'
    write_json(long, {})  # again: a stale temporary of it would be found by the same name
    assert sorted(p.name for p in tmp_path.iterdir()) == [long.name]
    too_long = tmp_path / ("y" * 256)
    with pytest.raises(OutputError) as caught:
        write_json(too_long, {})
    assert caught.value.what.endswith(": File name too long")


def test_two_outputs_or_an_output_and_an_input_that_are_one_file_are_refused(
    tmp_path: Path,
) -> None:
    """`--report r.json --html r.json` wrote the page, then the report over it; the page's
    sidecar can also meet the report, and `report R --html R` would overwrite its input."""
    report, page = tmp_path / "r.json", tmp_path / "r.html"
    (tmp_path / "link.json").symlink_to(report)
    cases = [
        ([("--report", report), ("--html", report)], [], "--report and --html"),
        (
            [("--report", tmp_path / "r.figures.json"), ("--html", page)],
            [],
            "--report and --html's figures sidecar",
        ),
        ([("--report", tmp_path / "link.json"), ("--html", report)], [], "--report and --html"),
        ([("--html", report)], [("REPORT_FILE", report)], "REPORT_FILE and --html"),
    ]
    for outputs, inputs, who in cases:
        with pytest.raises(ConfigError) as caught:
            check_outputs(outputs, inputs)
        assert caught.value.what.startswith(f"{who} are the same file, "), caught.value.what
        assert caught.value.hint == "give each its own file name"
    check_outputs([("--report", report), ("--html", page), ("--html", None)])  # all distinct
    assert list(tmp_path.iterdir()) == [tmp_path / "link.json"]  # nothing written by checking
