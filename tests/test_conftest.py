"""The test session's own fixtures: under CI a missing TimescaleDB server fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.pgtimescale import NODE_ENV

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 error"), (None, "1 skipped")])
def test_timescale_fixture_when_server_missing_fails_under_ci_and_skips_otherwise(
    tmp_path: Path, ci: str | None, outcome: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HISTETL_TEST_TIMESCALE_URI")}
    env[NODE_ENV] = str(tmp_path / "no-node")
    if ci is not None:
        env["CI"] = ci
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/targets/postgres/test_sink.py::test_db_init_adds_timescale_policies_from_options",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert outcome in result.stdout, result.stdout[-2000:]
    assert (result.returncode == 0) is (ci is None), result.stdout[-2000:]
