"""The progress bar: drawn on a terminal and erased before each file's line; never drawn
without one (cron, pipes), where each file gets its log line only."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from histetl.synth import SynthSpec, write_dbn

HISTETL = [sys.executable, "-m", "histetl.cli"]
ERASE_LINE = "\x1b[2K"


@pytest.fixture
def dbn_file(tmp_path: Path) -> Path:
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=200_000), path)
    return path


def on_a_terminal(*args: str | Path, cwd: Path) -> str:
    """Run the CLI with stdout and stderr on a pseudo-terminal; return what it drew."""
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [*HISTETL, *map(str, args)], cwd=cwd, stdin=subprocess.DEVNULL, stdout=child, stderr=child
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    assert proc.wait(timeout=120) == 0
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_sees_a_bar_that_the_file_line_replaces(dbn_file: Path) -> None:
    drawn = on_a_terminal(
        "replay", dbn_file, "--validate-only", "--batch-size", "10000", cwd=dbn_file.parent
    )
    bar, _, after = drawn.rpartition(ERASE_LINE)
    for part in ("t.dbn", "records", "/s", "%"):
        assert part in bar
    assert "200,000 records" in bar  # the last update before it was erased
    assert "t.dbn: 200000 records" in after  # the file's log line, where the bar was
    assert "TOTAL" in after


def test_without_a_terminal_nothing_is_drawn(dbn_file: Path) -> None:
    result = subprocess.run(
        [*HISTETL, "replay", dbn_file, "--validate-only", "--batch-size", "10000"],
        cwd=dbn_file.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stderr + result.stdout
    assert "%" not in result.stderr
    assert "t.dbn: 200000 records" in result.stderr
