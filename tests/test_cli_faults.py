"""A walk over the CLI with bad inputs and bad environments, as real subprocesses.

For every case: no output contains "Traceback", the exit code is the documented one (README
"Exit codes": 1 failed, 2 usage or configuration error before any work, 0 ok), and the message
is one line that names what went wrong and where (the case's `expect` pattern must match a
single line of stderr).

Add a case by adding a row to CASES. Placeholders in args and env: `{w}` is the shared world
folder (small DBN files, a loaded DuckDB `w.duckdb`, bad config files; see `world`), `{c}` the
case's own empty working folder, `{full}` a folder on a file system with no space left (a tiny
tmpfs; such cases are skipped where mounting is not allowed).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.synth import Defects, SynthSpec, write_dbn
from tests.support.unprivileged import fill, run_cli, shared_dir, tiny_fs


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    exit: int
    expect: str  # regex that must match one line of stderr: what and where
    env: dict[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()  # environment variables to remove
    unprivileged: bool = False  # run as `nobody`, so mode bits apply (tests run as root)


def case(name: str, *args: str, exit: int, expect: str, marks: Any = (), **kw: Any) -> Any:
    return pytest.param(Case(tuple(args), exit, expect, **kw), id=name, marks=marks)


VALID = "--validate-only"
DB = "duckdb:///{w}/w.duckdb"

CASES = [
    # -- inputs: paths ------------------------------------------------------------------------
    case("replay-missing-path", "replay", "{w}/nope.dbn", VALID, exit=2,
         expect=r"^error: PATH: no DBN files match '.*/nope\.dbn'"),
    case("replay-glob-matches-nothing", "replay", "{w}/*.nothing", VALID, exit=2,
         expect=r"^error: PATH: no DBN files match"),
    case("replay-empty-folder", "replay", "{w}/emptydir", VALID, exit=2,
         expect=r"^error: PATH: no DBN files match '.*/emptydir'"),
    case("replay-broken-symlink", "replay", "{w}/broken.dbn", VALID, exit=2,
         expect=r"^error: .*/broken\.dbn: broken symbolic link"),
    case("replay-broken-symlink-inside-folder", "replay", "{w}/withbroken", VALID, exit=2,
         expect=r"^error: .*/withbroken/gone\.dbn: broken symbolic link"),
    case("replay-fifo-named-dbn", "replay", "{w}/fifodir", VALID, exit=2,
         expect=r"^error: .*/fifodir/pipe\.dbn: not a regular file"),
    case("replay-device", "replay", "/dev/null", VALID, exit=2,
         expect=r"^error: /dev/null: not a regular file"),
    case("replay-unreadable-file", "replay", "{w}/locked.dbn", VALID, exit=2,
         expect=r"^error: .*/locked\.dbn: cannot read: Permission denied", unprivileged=True),
    case("replay-unreadable-subfolder", "replay", "{w}/tree", VALID, exit=2,
         expect=r"^error: .*/tree/closed: cannot read folder: Permission denied",
         unprivileged=True),
    # -- inputs: file contents ------------------------------------------------------------------
    case("replay-garbage-file", "replay", "{w}/garbage.dbn", VALID, exit=1,
         expect=r"^ERROR +.*/garbage\.dbn failed: .*/garbage\.dbn at byte 0: not a DBN file"),
    case("replay-empty-file", "replay", "{w}/empty.dbn", VALID, exit=1,
         expect=r"^ERROR +.*/empty\.dbn failed: .*/empty\.dbn"),
    case("replay-truncated-dbn", "replay", "{w}/cut.dbn", VALID, exit=1,
         expect=r"^ERROR +.*/cut\.dbn failed: .*/cut\.dbn at byte \d+: file is truncated"),
    case("replay-zst-cut-before-first-block", "replay", "{w}/cut-early.dbn.zst", VALID, exit=1,
         expect=r"^ERROR +.*/cut-early\.dbn\.zst failed: .*truncated"),
    case("replay-zst-cut-mid-stream", "replay", "{w}/cut-mid.dbn.zst", "--db", "duckdb:///x.duckdb",
         exit=1, expect=r"^ERROR +.*/cut-mid\.dbn\.zst failed: .*truncated"),
    # -- options --------------------------------------------------------------------------------
    case("replay-batch-size-zero", "replay", "{w}/good.dbn", VALID, "--batch-size", "0", exit=2,
         expect=r"^error: --batch-size: "),
    case("replay-batch-size-text", "replay", "{w}/good.dbn", VALID, "--batch-size", "many",
         exit=2, expect=r"Invalid value for '--batch-size'"),
    case("replay-batch-size-huge", "replay", "{w}/good.dbn", VALID, "--batch-size",
         "1000000000000", exit=2, expect=r"^error: --batch-size: "),
    case("replay-workers-zero", "replay", "{w}/good.dbn", VALID, "--workers", "0", exit=2,
         expect=r"Invalid value for '--workers'"),
    case("replay-workers-on-duckdb", "replay", "{w}/good.dbn", "--db", "duckdb:///x.duckdb",
         "--workers", "2", exit=2, expect=r"^error: --workers: DuckDB allows one writing"),
    case("replay-on-invalid-unknown", "replay", "{w}/good.dbn", "--on-invalid", "drop", exit=2,
         expect=r"Invalid value for '--on-invalid'"),
    case("replay-db-unknown-scheme", "replay", "{w}/good.dbn", "--db", "mysql://h/db", exit=2,
         expect=r"^error: --db: unsupported database URI scheme 'mysql'"),
    case("replay-db-env-unknown-scheme", "replay", "{w}/good.dbn", exit=2,
         expect=r"^error: --db: unsupported database URI scheme 'sqlite'",
         env={"HISTETL_DB": "sqlite:///x.db"}),
    case("replay-db-is-a-folder", "replay", "{w}/good.dbn", "--db", "duckdb:///{w}/emptydir",
         exit=2, expect=r"^error: .*emptydir: the DuckDB database path is a directory"),
    # -- rules and mapping files ------------------------------------------------------------------
    case("replay-rules-missing", "replay", "{w}/good.dbn", VALID, "--rules", "{w}/no.yaml", exit=2,
         expect=r"Invalid value for '--rules'.*no\.yaml"),
    case("replay-rules-is-a-folder", "replay", "{w}/good.dbn", VALID, "--rules", "{w}/emptydir",
         exit=2, expect=r"Invalid value for '--rules'.*emptydir.* is a directory"),
    case("replay-rules-binary", "replay", "{w}/good.dbn", VALID, "--rules", "{w}/garbage.dbn",
         exit=2, expect=r"^error: .*/garbage\.dbn: not a text \(UTF-8\) file"),
    case("replay-rules-bad-yaml", "replay", "{w}/good.dbn", VALID, "--rules", "{w}/badyaml.yaml",
         exit=2, expect=r"^error: .*/badyaml\.yaml:\d+: not valid YAML"),
    case("replay-rules-unknown-column", "replay", "{w}/good.dbn", VALID, "--rules",
         "{w}/rules-unknown-column.yaml", exit=2,
         expect=r"^error: .*/rules-unknown-column\.yaml: rule no_such \(trades\): cannot evaluate"),
    case("replay-rules-unknown-key", "replay", "{w}/good.dbn", VALID, "--rules",
         "{w}/rules-unknown-key.yaml", exit=2,
         expect=r"^error: .*/rules-unknown-key\.yaml: rulez: unknown key"),
    case("replay-rule-raises-on-data", "replay", "{w}/good.dbn", "--db", "duckdb:///x.duckdb",
         "--rules", "{w}/rules-raise.yaml", exit=1,
         expect=r"^ERROR +.*/good\.dbn failed: .*/good\.dbn: rule symbol_is_number "),
    case("replay-mapping-unknown-type", "replay", "{w}/good.dbn", VALID, "--mapping",
         "{w}/mapping-bad-type.yaml", exit=2,
         expect=r"^error: .*mapping-bad-type\.yaml: tables\.trades\.cast\.size: unknown type"),
    case("replay-mapping-cast-overflows", "replay", "{w}/good.dbn", "--db", "duckdb:///x.duckdb",
         "--mapping", "{w}/mapping-overflow.yaml", exit=1,
         expect=r"^ERROR +.*/good\.dbn failed: .*/good\.dbn: .*tables\.trades\.cast\.sequence"),
    case("replay-mapping-derive-raises", "replay", "{w}/good.dbn", "--db", "duckdb:///x.duckdb",
         "--mapping", "{w}/mapping-derive.yaml", exit=1,
         expect=r"^ERROR +.*/good\.dbn failed: .*/good\.dbn: .*tables\.trades\.derive\.n "),
    # -- outputs ----------------------------------------------------------------------------------
    case("replay-report-is-a-folder", "replay", "{w}/good.dbn", VALID, "--report", "{w}/emptydir",
         exit=2, expect=r"Invalid value for '--report'.*is a directory"),
    case("replay-report-under-a-file", "replay", "{w}/good.dbn", VALID, "--report",
         "{w}/good.dbn/r.json", exit=2, expect=r"^error: --report: .*good\.dbn"),
    case("replay-report-full-disk", "replay", "{w}/good.dbn", VALID, "--report", "/dev/full",
         exit=1, expect=r"^error: --report: cannot write /dev/full: No space left on device"),
    case("replay-report-fifo-without-reader", "replay", "{w}/good.dbn", VALID, "--report",
         "{w}/report.fifo", exit=1, expect=r"^error: --report: cannot write .*report\.fifo: no "),
    case("replay-report-unwritable-folder", "replay", "{w}/good.dbn", VALID, "--report",
         "{w}/readonly/r.json", exit=2,
         expect=r"^error: --report: folder .*/readonly is not writable", unprivileged=True),
    case("replay-quarantine-dir-is-a-file", "replay", "{w}/good.dbn", VALID, "--quarantine-dir",
         "{w}/good.dbn", exit=2, expect=r"Invalid value for '--quarantine-dir'"),
    case("replay-quarantine-dir-unwritable", "replay", "{w}/defects.dbn", VALID,
         "--quarantine-dir", "{w}/readonly/q", exit=2,
         expect=r"^error: --quarantine-dir: folder .*/readonly is not writable",
         unprivileged=True),
    case("replay-quarantine-dir-pseudo-fs", "replay", "{w}/defects.dbn", VALID,
         "--quarantine-dir", "/proc/q", exit=2,
         expect=r"^error: --quarantine-dir: folder /proc is not writable"),
    case("query-o-full-disk", "query", "--db", DB, "--schema", "trades", "--format", "csv", "-o",
         "/dev/full", exit=1, expect=r"^error: -o: cannot write /dev/full: No space left"),
    case("query-o-parquet-full-disk", "query", "--db", DB, "--schema", "trades", "--format",
         "parquet", "-o", "/dev/full", exit=1, expect=r"^error: -o: cannot write /dev/full"),
    case("query-o-under-a-file", "query", "--db", DB, "--schema", "trades", "-o",
         "{w}/good.dbn/out.csv", exit=2, expect=r"^error: -o: .*good\.dbn"),
    case("query-o-is-a-folder", "query", "--db", DB, "--schema", "trades", "-o", "{w}/emptydir",
         exit=2, expect=r"Invalid value for '-o'"),
    case("query-o-unwritable-folder", "query", "--db", DB, "--schema", "trades", "-o",
         "{w}/readonly/out.csv", exit=2, expect=r"^error: -o: folder .*/readonly is not writable",
         unprivileged=True),
    case("verify-report-full-disk", "verify", "--db", DB, "--report", "/dev/full", exit=1,
         expect=r"^error: --report: cannot write /dev/full: No space left"),
    case("verify-report-under-a-file", "verify", "--db", DB, "--report", "{w}/good.dbn/v.json",
         exit=2, expect=r"^error: --report: .*good\.dbn"),
    case("verify-report-pseudo-fs", "verify", "--db", DB, "--report", "/proc/v.json", exit=2,
         expect=r"^error: --report: folder /proc is not writable"),
    # -- read-back commands -----------------------------------------------------------------------
    case("query-unknown-schema", "query", "--db", DB, "--schema", "tradez", exit=2,
         expect=r"^error: --schema: "),
    case("query-bad-time", "query", "--db", DB, "--schema", "trades", "--start", "2024-13-45",
         exit=2, expect=r"^error: --start: cannot read '2024-13-45'"),
    case("query-missing-database", "query", "--db", "duckdb:///{c}/none.duckdb", "--schema",
         "trades", exit=2, expect=r"^error: --db: no DuckDB database at .*none\.duckdb"),
    case("verify-missing-database", "verify", "--db", "duckdb:///{c}/none.duckdb", exit=2,
         expect=r"^error: --db: no DuckDB database at .*none\.duckdb"),
    case("verify-calendar-binary", "verify", "--db", DB, "--calendar", "{w}/garbage.dbn", exit=2,
         expect=r"^error: .*/garbage\.dbn: not a text \(UTF-8\) file"),
    case("verify-rule-raises-on-loaded-data", "verify", "--db", DB, "--rules",
         "{w}/rules-raise.yaml", exit=1, expect=r"symbol_is_number"),
    case("resample-bad-interval", "resample", "--db", DB, "--interval", "7x", exit=2,
         expect=r"^error: --interval: cannot read '7x'"),
    case("quarantine-not-a-quarantine-file", "quarantine", "{w}/good.dbn", exit=1,
         expect=r"^error: .*/good\.dbn: not a readable quarantine file"),
    case("quarantine-rows-negative", "quarantine", "{w}/good.dbn", "--rows", "-3", exit=2,
         expect=r"Invalid value for '--rows'"),
    case("quarantine-dir-is-a-file", "quarantine", "--quarantine-dir", "{w}/good.dbn", exit=2,
         expect=r"Invalid value for '--quarantine-dir'"),
    case("synth-unwritable-path", "synth", "/proc/x.dbn", "--schema", "trades", exit=2,
         expect=r"^error: .*/proc/x\.dbn"),
    # -- job files ------------------------------------------------------------------------------
    case("run-job-file-missing", "run", "{w}/nojob.yaml", exit=2,
         expect=r"Invalid value for 'JOB_FILE'"),
    case("run-job-file-is-a-folder", "run", "{w}/emptydir", exit=2,
         expect=r"Invalid value for 'JOB_FILE'.*is a directory"),
    case("run-job-bad-yaml", "run", "{w}/badyaml.yaml", "--dry-run", exit=2,
         expect=r"^error: .*/badyaml\.yaml:\d+: not valid YAML"),
    case("run-job-binary", "run", "{w}/garbage.dbn", "--dry-run", exit=2,
         expect=r"^error: .*/garbage\.dbn: not a text \(UTF-8\) file"),
    case("run-job-impossible-date", "run", "{w}/job-date.yaml", "--dry-run", exit=2,
         expect=r"^error: .*/job-date\.yaml: jobs\[0\]\.start: .*'2024-13-45' is not a date"),
    case("jobs-job-impossible-date", "jobs", "{w}/job-date.yaml", exit=2,
         expect=r"^error: .*/job-date\.yaml: jobs\[0\]\.start: .*'2024-13-45'"),
    case("run-job-unknown-schema", "run", "{w}/job-schema.yaml", "--dry-run", exit=2,
         expect=r"^error: .*/job-schema\.yaml: jobs\[0\]\.schema: "),
    case("run-job-no-api-key", "run", "{w}/job-ok.yaml", exit=2,
         expect=r"^error: databento\.key_env_var: environment variable DATABENTO_API_KEY",
         unset=("DATABENTO_API_KEY",)),
    case("run-report-under-a-file", "run", "{w}/job-ok.yaml", "--report", "{w}/good.dbn/r.json",
         exit=2, expect=r"^error: --report: .*good\.dbn"),
    # -- environment ----------------------------------------------------------------------------
    case("log-dir-under-a-file", "replay", "{w}/good.dbn", VALID, exit=0,
         expect=r"^WARNING +cannot write the log file under .*good\.dbn/logs",
         env={"HISTETL_LOG_DIR": "{w}/good.dbn/logs"}),
    case("home-under-a-file-no-log-dir", "replay", "{w}/good.dbn", VALID, exit=0,
         expect=r"^WARNING +cannot write the log file under .*good\.dbn",
         env={"HOME": "{w}/good.dbn"}, unset=("HISTETL_LOG_DIR", "XDG_STATE_HOME")),
    case("xdg-state-under-a-file", "replay", "{w}/good.dbn", VALID, exit=0,
         expect=r"^WARNING +cannot write the log file under .*good\.dbn/histetl",
         env={"XDG_STATE_HOME": "{w}/good.dbn"}, unset=("HISTETL_LOG_DIR",)),
    case("log-dir-on-a-full-disk", "replay", "{w}/good.dbn", VALID, exit=0,
         expect=r"^WARNING +cannot write the log file .*/histetl\.log: No space left on device",
         env={"HISTETL_LOG_DIR": "{full}/logs"}),
    case("report-on-a-full-disk", "replay", "{w}/good.dbn", VALID, "--report",
         "{full}/r.json", exit=1,
         expect=r"^error: --report: cannot write .*/r\.json: No space left on device"),
    case("query-o-on-a-full-disk", "query", "--db", DB, "--schema", "trades", "-o",
         "{full}/q.csv", exit=1, expect=r"^error: -o: cannot write .*/q\.csv: No space left"),
    case("log-dir-unwritable", "replay", "{w}/good.dbn", VALID, exit=0,
         expect=r"^WARNING +cannot write the log file under .*/readonly/logs",
         env={"HISTETL_LOG_DIR": "{w}/readonly/logs"}, unprivileged=True),
    case("home-unwritable", "replay", "{w}/good.dbn", VALID, exit=0,
         expect=r"^WARNING +cannot write the log file under .*/readonly/",
         env={"HOME": "{w}/readonly"}, unset=("HISTETL_LOG_DIR", "XDG_STATE_HOME"),
         unprivileged=True),
]  # fmt: skip


JOB = (
    "raw_dir: raw\ndb: duckdb:///./j.duckdb\njobs:\n"
    "  - {{name: a, dataset: GLBX.MDP3, schema: {schema}, symbols: [ESH4], "
    "start: {start}, end: 2024-01-03}}\n"
)


@pytest.fixture(scope="module")
def world() -> Iterator[Path]:
    """Small inputs, bad files and a loaded database, in a folder `nobody` can use."""
    with shared_dir() as w:
        write_dbn(SynthSpec(schema="trades", records=50), w / "good.dbn")
        write_dbn(SynthSpec(schema="trades", records=400, seed=1), w / "good.dbn.zst")
        zst = (w / "good.dbn.zst").read_bytes()
        (w / "cut-early.dbn.zst").write_bytes(zst[:12])
        (w / "cut-mid.dbn.zst").write_bytes(zst[: len(zst) // 2])
        write_dbn(SynthSpec(schema="trades", records=50, defects=Defects(zero_size=5)),
                  w / "defects.dbn")  # fmt: skip
        (w / "cut.dbn").write_bytes((w / "good.dbn").read_bytes()[:-7])
        (w / "empty.dbn").write_bytes(b"")
        (w / "garbage.dbn").write_bytes(bytes(range(256)) * 4)
        for folder in ("emptydir", "withbroken", "fifodir", "tree/open", "tree/closed"):
            (w / folder).mkdir(parents=True)
        (w / "broken.dbn").symlink_to(w / "deleted.dbn")
        shutil.copy(w / "good.dbn", w / "withbroken" / "a.dbn")
        (w / "withbroken" / "gone.dbn").symlink_to(w / "deleted.dbn")
        shutil.copy(w / "good.dbn", w / "fifodir" / "a.dbn")
        os.mkfifo(w / "fifodir" / "pipe.dbn")
        os.mkfifo(w / "report.fifo")
        shutil.copy(w / "good.dbn", w / "tree" / "open" / "a.dbn")
        shutil.copy(w / "good.dbn", w / "tree" / "closed" / "b.dbn")
        (w / "tree" / "closed").chmod(0o000)
        shutil.copy(w / "good.dbn", w / "locked.dbn")
        (w / "locked.dbn").chmod(0o000)
        (w / "readonly").mkdir()
        (w / "readonly").chmod(0o555)
        files = {
            "badyaml.yaml": "rules: [\n",
            "rules-unknown-column.yaml": "rules:\n  trades:\n"
            "    - {name: no_such, expr: 'x > 0'}\n",
            "rules-unknown-key.yaml": "rulez: {}\n",
            "rules-raise.yaml": "rules:\n  trades:\n"
            "    - {name: symbol_is_number, expr: 'CAST(symbol AS INT) > 0'}\n",
            "mapping-bad-type.yaml": "tables:\n  trades:\n    cast: {size: Int9}\n",
            "mapping-overflow.yaml": "tables:\n  trades:\n    cast: {sequence: Int8}\n",
            "mapping-derive.yaml": "tables:\n  trades:\n    derive: {n: 'CAST(symbol AS INT)'}\n",
            "job-date.yaml": JOB.format(schema="trades", start="2024-13-45"),
            "job-schema.yaml": JOB.format(schema="tradez", start="2024-01-01"),
            "job-ok.yaml": JOB.format(schema="trades", start="2024-01-01"),
        }
        for name, text in files.items():
            (w / name).write_text(text)
        options = ReplayOptions(db=f"duckdb:///{w / 'w.duckdb'}", quarantine_dir=w / "q")
        report = Replayer(options).run([w / "good.dbn"])
        assert report.files[0].status == "loaded"
        for p in [w / "w.duckdb", *w.glob("*.yaml")]:
            p.chmod(0o666)
        yield w


@pytest.fixture(scope="module")
def full_disk() -> Iterator[Path]:
    """A folder on a file system with no space left, writable by everyone."""
    with tiny_fs() as root:
        (root / "logs").mkdir(mode=0o777)
        root.chmod(0o777)
        fill(root)
        yield root


@pytest.mark.parametrize("fault", CASES)
def test_cli_fault_ends_in_one_clear_line_and_the_documented_exit_code(
    world: Path, fault: Case, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    cwd = world / "cases" / request.node.callspec.id
    cwd.mkdir(parents=True)
    cwd.chmod(0o777)
    logs = cwd / "logs"

    full = (
        request.getfixturevalue("full_disk")
        if any("{full}" in a for a in (*fault.args, *fault.env.values()))
        else None
    )

    def expand(text: str) -> str:
        text = text.replace("{w}", str(world)).replace("{c}", str(cwd))
        return text.replace("{full}", str(full)) if full is not None else text

    key = "db-" + "K3y" * 9 + "AB"  # a made-up API key
    env = {"HISTETL_LOG_DIR": str(logs), "DATABENTO_API_KEY": key}
    env.update({k: expand(v) for k, v in fault.env.items()})
    for k in fault.unset:
        monkeypatch.delenv(k, raising=False)
        env.pop(k, None)
    result = run_cli(
        *(expand(a) for a in fault.args), cwd=cwd, env=env, unprivileged=fault.unprivileged
    )

    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-2000:]
    assert key not in output  # the key is never shown
    assert result.returncode == fault.exit, output[-2000:]
    lines = [line for line in result.stderr.splitlines() if re.search(fault.expect, line)]
    assert lines, f"no line matches {fault.expect!r} in:\n{result.stderr[-2000:]}"
    if fault.exit == 2 and result.stderr.startswith("error:"):
        # a usage error is one message: the line, and at most a hint line under it
        assert result.stderr.count("error:") == 1, result.stderr
        shape = [line.startswith(("error:", "  hint:")) for line in result.stderr.splitlines()]
        assert all(shape), result.stderr


def test_report_through_a_symlink_writes_its_target_and_keeps_the_link(world: Path) -> None:
    cwd = world / "cases" / "report-symlink"
    cwd.mkdir(parents=True)
    (cwd / "real.json").write_text("old")
    (cwd / "link.json").symlink_to(cwd / "real.json")

    result = run_cli("replay", world / "good.dbn", VALID, "--report", "link.json", cwd=cwd)

    assert result.returncode == 0, result.stderr
    assert (cwd / "link.json").is_symlink()
    assert '"run_id"' in (cwd / "real.json").read_text()


def test_report_on_a_full_disk_after_the_load_exits_1_and_a_rerun_skips_the_loaded_file(
    world: Path,
) -> None:
    cwd = world / "cases" / "report-full-after-load"
    cwd.mkdir(parents=True)
    with tiny_fs() as full:
        (full / "report.json").write_text("old report")
        fill(full)

        first = run_cli(
            "replay", world / "good.dbn", "--db", "duckdb:///h.duckdb", "--report",
            full / "report.json", cwd=cwd,
        )  # fmt: skip

        assert (full / "report.json").read_text() == "old report"  # unchanged, no half file
        assert sorted(p.name for p in full.iterdir()) == [".filler", "report.json"]
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stdout + first.stderr
    assert "error: --report: cannot write" in first.stderr
    assert "No space left on device" in first.stderr

    again = run_cli("replay", world / "good.dbn", "--db", "duckdb:///h.duckdb", cwd=cwd)

    assert again.returncode == 0, again.stderr
    assert "already loaded (50 records), skipped" in again.stderr


def test_report_folder_unwritable_is_refused_before_the_database_is_touched(world: Path) -> None:
    cwd = world / "cases" / "report-refused-before-work"
    cwd.mkdir(parents=True)
    cwd.chmod(0o777)
    result = run_cli(
        "replay", world / "good.dbn", "--db", "duckdb:///h.duckdb", "--report",
        world / "readonly" / "r.json", cwd=cwd, env={"HISTETL_LOG_DIR": str(cwd / "logs")},
        unprivileged=True,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert not (cwd / "h.duckdb").exists()
