"""histetl.faults: the one fault-injection seam kills its process at the named point only, and
does nothing when HISTETL_TEST_FAULT is unset (as always outside the tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from histetl.faults import FAULT_ENV, fault_point

# the points the pipeline calls, with the records loaded so far at each
SCRIPT = """
from histetl.faults import fault_point
for records in (100, 200, 300):
    fault_point("after_batch", records)
    print("batch", records, flush=True)
fault_point("before_commit")
print("commit", flush=True)
fault_point("after_commit")
print("done", flush=True)
"""


def run(fault: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if fault is not None:
        env[FAULT_ENV] = fault
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=False
    )


ALL = ["batch 100", "batch 200", "batch 300", "commit", "done"]


@pytest.mark.parametrize(
    ("fault", "printed"),
    [
        (None, ALL),
        ("", ALL),
        ("elsewhere", ALL),
        ("after_batch", []),  # the first batch
        ("after_batch:200", ["batch 100"]),  # once 200 records are loaded
        ("after_batch:250", ["batch 100", "batch 200"]),
        ("before_commit", ["batch 100", "batch 200", "batch 300"]),
        ("after_commit", ["batch 100", "batch 200", "batch 300", "commit"]),
    ],
)
def test_the_process_dies_by_sigkill_exactly_at_the_asked_point(
    fault: str | None, printed: list[str]
) -> None:
    done = run(fault)

    assert done.stdout.splitlines() == printed
    assert done.returncode == (0 if printed == ALL else -signal.SIGKILL)
    assert done.stderr == ""


def test_unset_it_returns_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FAULT_ENV, raising=False)
    reached = []

    for point in ("after_batch", "before_commit", "after_commit"):
        fault_point(point, 10**9)  # would SIGKILL pytest itself if it fired
        reached.append(point)

    assert reached == ["after_batch", "before_commit", "after_commit"]
