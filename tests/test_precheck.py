"""The ledger pre-check: a rerun that finds nothing new is answered from the ledger without
loading a stage, and reports exactly what a run through the pipeline reports; anything else
goes through the pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from histetl.cli import main
from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.report import RunReport
from histetl.source.files import expand_paths
from histetl.synth import SynthSpec, write_dbn
from tests.pipeline.test_run import db_trades, gateway, gw, trades, write_job
from tests.support.fake_gateway import FakeGateway
from tests.support.pgserver import PgServer, fresh_schema

__all__ = ["gateway", "gw", "trades"]  # fixtures, imported to be registered here

# Modules a skipped rerun or `--help` must not import: the stages and the driver stacks (the
# PostgreSQL lookup reads one Arrow result, so pyarrow and numpy may load there).
STAGES = (
    "histetl.pipeline.replay",
    "histetl.decode",
    "histetl.validate",
    "histetl.mapping",
    "histetl.read.database",
    "histetl.targets.duckdb.sink",
    "histetl.targets.postgres.sink",
    "histetl.targets.delta.sink",
    "polars",
    "pandas",
    "databento_dbn",
    "pydantic",
    "tenacity",
    "adbc_driver_manager.dbapi",
)
# Runs the CLI and writes which of STAGES it imported to $MODULES_OUT (also after sys.exit).
RUN = (
    "import json, os, sys\n"
    "from histetl.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "finally:\n"
    "    names = [m for m in json.loads(os.environ['STAGES']) if m in sys.modules]\n"
    "    open(os.environ['MODULES_OUT'], 'w').write(json.dumps(names))\n"
)


def histetl(
    tmp_path: Path, *args: str | Path, watch: tuple[str, ...] = STAGES
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the CLI in a fresh interpreter; return the process and the modules of `watch`
    (default STAGES) it imported."""
    out = tmp_path / "modules.json"
    env = {**os.environ, "STAGES": json.dumps(watch), "MODULES_OUT": str(out)}
    result = subprocess.run(
        [sys.executable, "-c", RUN, *(str(a) for a in args)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, json.loads(out.read_text())


@pytest.fixture(params=["duckdb", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'h.duckdb'}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    with fresh_schema(server.uri) as (uri, _schema):
        yield uri


def files(tmp_path: Path, *names: str) -> list[Path]:
    paths = []
    for seed, name in enumerate(names):
        path = tmp_path / "raw" / name
        path.parent.mkdir(exist_ok=True)
        schema = "mbp-1" if "mbp" in name else "trades"
        write_dbn(SynthSpec(schema=schema, records=300, seed=seed), path)
        paths.append(path)
    return paths


def pipeline_run(tmp_path: Path, db: str, paths: list[Path]) -> RunReport:
    options = ReplayOptions(db=db, quarantine_dir=tmp_path / "quarantine")
    return Replayer(options).run(expand_paths(paths))


def comparable(files: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in f.items() if k != "seconds"} for f in files]


def test_a_rerun_of_loaded_files_loads_no_stage_and_reports_as_the_pipeline(
    tmp_path: Path, target: str
) -> None:
    paths = files(tmp_path, "a.dbn", "b.dbn.zst", "c-mbp.dbn")
    first = pipeline_run(tmp_path, target, paths)
    assert [f.status for f in first.files] == ["loaded"] * 3
    through_pipeline = pipeline_run(tmp_path, target, paths)  # the pipeline's own skip

    result, imported = histetl(
        tmp_path, "replay", tmp_path / "raw", "--db", target, "--report", "fast.json"
    )

    assert result.returncode == 0, result.stderr
    assert imported == []
    fast = json.loads((tmp_path / "fast.json").read_text())
    expected = through_pipeline.to_dict()
    assert comparable(fast["files"]) == comparable(expected["files"])
    assert fast["totals"] == expected["totals"] == {**fast["totals"], "skipped": 900}
    assert fast["db"] == expected["db"]
    assert "already loaded (300 records), skipped" in result.stderr
    assert "TOTAL" in result.stdout


def test_a_new_file_among_loaded_ones_goes_through_the_pipeline(
    tmp_path: Path, target: str
) -> None:
    old, new = files(tmp_path, "a.dbn", "b.dbn")
    pipeline_run(tmp_path, target, [old])

    result, imported = histetl(tmp_path, "replay", old, new, "--db", target, "--report", "r.json")

    assert result.returncode == 0, result.stderr
    assert "histetl.pipeline.replay" in imported
    report = json.loads((tmp_path / "r.json").read_text())
    assert [(f["status"], f["skipped"], f["loaded"]) for f in report["files"]] == [
        ("skipped", 300, 0),
        ("loaded", 0, 300),
    ]


@pytest.mark.parametrize("extra", [["--force"], ["--rules", "rules.yaml"]])
def test_force_and_rules_files_take_the_pipeline(tmp_path: Path, extra: list[str]) -> None:
    db = f"duckdb:///{tmp_path / 'h.duckdb'}"
    (path,) = files(tmp_path, "a.dbn")
    pipeline_run(tmp_path, db, [path])
    (tmp_path / "rules.yaml").write_text("rules: {}\n")

    result, imported = histetl(tmp_path, "replay", path, "--db", db, "--report", "r.json", *extra)

    assert result.returncode == 0, result.stderr
    assert "histetl.validate" in imported  # rules were compiled
    (file,) = json.loads((tmp_path / "r.json").read_text())["files"]
    assert file["status"] == ("loaded" if extra == ["--force"] else "skipped")
    assert file["duplicates"] == (300 if extra == ["--force"] else 0)


def test_a_file_loaded_into_a_mapped_table_loads_again_into_the_canonical_one(
    tmp_path: Path,
) -> None:
    """The ledger row is for another table: not "already loaded" for this run."""
    db = f"duckdb:///{tmp_path / 'h.duckdb'}"
    (path,) = files(tmp_path, "a.dbn")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("tables:\n  trades:\n    table: trades_copy\n")
    options = ReplayOptions(db=db, quarantine_dir=tmp_path / "q", mapping_file=mapping)
    assert Replayer(options).run([path]).files[0].table == "trades_copy"

    result, _imported = histetl(tmp_path, "replay", path, "--db", db, "--report", "r.json")

    assert result.returncode == 0, result.stderr
    (file,) = json.loads((tmp_path / "r.json").read_text())["files"]
    assert (file["status"], file["table"], file["loaded"]) == ("loaded", "trades", 300)


# ...nor, for `--help`, anything heavy: Arrow, numpy, the database drivers, loguru (asyncio),
# and histetl's options/report/target modules (the option defaults live in histetl.config).
HELP_HEAVY = (
    *STAGES,
    "pyarrow",
    "numpy",
    "duckdb",
    "adbc_driver_manager",
    "psycopg",
    "deltalake",
    "loguru",
    "asyncio",
    "ctypes",
    "histetl.logs",
    "histetl.options",
    "histetl.report",
    "histetl.targets",
    "histetl.pipeline",
    "histetl.precheck",
)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["replay", "--help"],
        ["-v", "--log-json", "replay", "--help"],
        ["run", "--help"],
        ["query", "--help"],
        ["db", "init", "--help"],
        ["lake", "vacuum", "--help"],
        ["synth", "--help"],
    ],
)
def test_help_loads_no_stage_no_driver_and_no_loguru(tmp_path: Path, args: list[str]) -> None:
    result, imported = histetl(tmp_path, *args, watch=HELP_HEAVY)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    assert imported == []


def test_a_run_that_finds_nothing_new_loads_no_stage_and_asks_no_api(
    gw: FakeGateway, tmp_path: Path
) -> None:
    job = write_job(tmp_path, gw)
    first = CliRunner().invoke(main, ["run", str(job)], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    gw.requests.clear()

    result, imported = histetl(tmp_path, "run", job, "--report", "r.json")

    assert result.returncode == 0, result.stderr
    assert gw.requests == []
    # the job file is validated (pydantic) and fetching is set up (tenacity): nothing else
    assert set(imported) <= {"pydantic", "tenacity"}
    report = json.loads((tmp_path / "r.json").read_text())
    assert [f["status"] for f in report["files"]] == ["skipped"] * 3
    assert report["totals"]["skipped"] == len(db_trades(tmp_path / "h.duckdb")) > 0
