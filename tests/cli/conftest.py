"""What the command tests share: a small trades file with known defects, and `histetl` run as
a separate process (as cron runs it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from histetl.synth import Defects, SynthSpec, write_dbn

HISTETL = [sys.executable, "-m", "histetl.cli"]


@pytest.fixture
def trades_dbn(tmp_path: Path) -> Path:
    """301 trades: 2 of size 0 (quarantined), 1 exact duplicate."""
    path = tmp_path / "trades.dbn.zst"
    write_dbn(
        SynthSpec(
            schema="trades", records=300, seed=3, defects=Defects(zero_size=2, exact_duplicates=1)
        ),
        path,
    )
    return path


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`histetl ARGS` in a process of its own, in `cwd`."""
    return subprocess.run(
        [*HISTETL, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
