"""Run one measured path in its own process: wall time and that process's peak RSS.

Peak RSS comes from `os.wait4`, the kernel's accounting for exactly that child (no
`/usr/bin/time` needed). Linux starts a child's `ru_maxrss` at its parent's RSS at spawn time,
so the child is spawned by a tiny launcher (`python -S`, ~10 MB) rather than by this runner,
whose own size would otherwise set the floor of every measurement. In-process operations run
through `python -m benchmarks.probe`, which times the operation itself and prints a JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


# Spawns argv, waits, writes {"wall": s, "maxrss_kb": n} to a file; exits with argv's status.
_LAUNCHER = """import json, os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(out, "w") as f:
    json.dump({"wall": wall, "maxrss_kb": usage.ru_maxrss}, f)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


class BenchError(RuntimeError):
    """A measured process failed: the message carries its command and stderr tail."""


@dataclass
class Proc:
    wall: float  # seconds, start to exit, of the whole process
    peak_rss_mb: float  # the child's ru_maxrss
    stdout: str
    result: dict[str, Any] = field(default_factory=dict)  # a probe's JSON line, if any


def run_process(cmd: list[str], env: dict[str, str] | None = None) -> Proc:
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as scratch,
    ):
        usage_file = Path(scratch) / "usage.json"
        launcher = [sys.executable, "-S", "-c", _LAUNCHER, str(usage_file), *cmd]
        code = subprocess.run(launcher, stdout=out, stderr=err, cwd=ROOT, env=full_env).returncode
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
        usage = json.loads(usage_file.read_text()) if usage_file.exists() else {}
    if code != 0 or not usage:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise BenchError(f"exit {code}: {' '.join(cmd)}\n{tail}")
    return Proc(usage["wall"], usage["maxrss_kb"] / 1024, stdout)  # KiB on Linux


def probe(op: str, *args: str | Path | int) -> Proc:
    """`python -m benchmarks.probe OP ARGS...`; the result is its last stdout line (JSON)."""
    proc = run_process([sys.executable, "-m", "benchmarks.probe", op, *map(str, args)])
    proc.result = json.loads(proc.stdout.strip().splitlines()[-1])
    return proc


def histetl(*args: str | Path, report: Path) -> Proc:
    """The `histetl` CLI as a user runs it; `result` is its --report JSON."""
    proc = run_process([str(VENV_BIN / "histetl"), *map(str, args), "--report", str(report)])
    proc.result = json.loads(report.read_text())
    return proc


def replay_help() -> str:
    return subprocess.run(
        [str(VENV_BIN / "histetl"), "replay", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
