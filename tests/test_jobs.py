"""Job files: validation that names the YAML path of the bad key, relative dates, paths anchored
at the job file, and the plan of chunks."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from histetl.config import validate_model
from histetl.errors import ConfigError
from histetl.jobs import JobFile, JobSpec, load_job_file, plan_chunks, resolve_date

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
UTC = dt.UTC
JOB: dict[str, Any] = {
    "name": "es",
    "dataset": "GLBX.MDP3",
    "schema": "trades",
    "symbols": ["ES.c.0"],
    "stype_in": "continuous",
    "start": dt.date(2023, 12, 14),
    "end": dt.date(2023, 12, 16),
}


def job_file(**job: Any) -> JobFile:
    return validate_model(JobFile, {"jobs": [{**JOB, **job}]}, "job.yaml")


def error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as excinfo:
        validate_model(JobFile, data, "job.yaml")
    assert excinfo.value.exit_code == 2
    return excinfo.value.message


def job_error(**job: Any) -> str:
    return error({"jobs": [{**JOB, **job}]})


JOB_FILES = sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.endswith(".example.yaml"))


@pytest.mark.parametrize("path", JOB_FILES, ids=lambda p: p.name)
def test_example_configs_are_valid_and_plan(path: Path) -> None:
    loaded = load_job_file(path)
    for job in loaded.jobs:
        assert plan_chunks(job, today=dt.date(2024, 6, 3))


def test_example_configs_cover_the_common_uses() -> None:
    names = {p.name for p in CONFIGS.glob("*.yaml")}
    assert {"futures_continuous.yaml", "equities.yaml", "definitions_parent.yaml"} <= names
    stypes = {
        job["stype_in"]
        for p in JOB_FILES
        for job in yaml.safe_load(p.read_text())["jobs"]
        if "stype_in" in job
    }
    assert {"continuous", "raw_symbol", "parent"} <= stypes


def test_the_issue_example_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        """
databento:
  key_env_var: DATABENTO_API_KEY
  gateway: https://127.0.0.1:8443
  retry: {max_attempts: 5, max_wait_s: 60}
raw_dir: ./raw
db: duckdb:///./histetl.duckdb
jobs:
  - name: es_trades
    dataset: GLBX.MDP3
    schema: trades
    symbols: [ES.c.0]
    stype_in: continuous
    start: 2023-12-14
    end: 2023-12-16
    chunk_days: 1
    max_cost_usd: 5.0
"""
    )
    loaded = load_job_file(path)
    assert loaded.raw_dir == tmp_path / "raw"  # anchored at the job file, not the cwd
    assert loaded.db == f"duckdb:///{tmp_path / 'histetl.duckdb'}"
    path.write_text(path.read_text().replace("duckdb:///./histetl.duckdb", "delta:///lake"))
    assert load_job_file(path).db == f"delta:///{tmp_path / 'lake'}"
    assert loaded.databento.retry.max_attempts == 5
    job = loaded.jobs[0]
    assert job.schema_list == ("trades",)
    assert job.window() == (
        dt.datetime(2023, 12, 14, tzinfo=UTC),
        dt.datetime(2023, 12, 16, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"jobs": [{**JOB, "symbol": "ES"}]}, "jobs[0].symbol: unknown key"),
        ({"jobs": [JOB], "raw": "x"}, "raw: unknown key"),
        (
            {"jobs": [JOB], "databento": {"retry": {"tries": 3}}},
            "databento.retry.tries: unknown key",
        ),
        (
            {"jobs": [JOB], "databento": {"retry": {"max_attempts": 0}}},
            "databento.retry.max_attempts",
        ),
        ({"jobs": []}, "jobs: List should have at least 1 item"),
        ({}, "jobs: Field required"),
        ({"jobs": [JOB, JOB]}, "jobs: job names must be unique; repeated: es"),
        ({"jobs": [JOB], "db": "mysql://x"}, "db: use duckdb:///"),
        ({"jobs": [JOB], "databento": {"gateway": "localhost"}}, "databento.gateway: must be"),
    ],
)
def test_bad_keys_are_named_by_their_yaml_path(data: dict[str, Any], message: str) -> None:
    assert message in error(data)


@pytest.mark.parametrize(
    ("url", "kept"),
    [("s3://bucket/raw/", "s3://bucket/raw"), ("S3://bucket", "s3://bucket")],
)
def test_raw_dir_on_s3_is_kept_as_a_url_and_never_anchored(
    url: str, kept: str, tmp_path: Path
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"jobs": [{**JOB, "start": "2023-12-14"}], "raw_dir": url}))
    assert load_job_file(path).raw_dir == kept
    assert job_file().raw_dir == Path("raw")


def test_raw_dir_with_another_scheme_is_refused_in_one_line_saying_what_works() -> None:
    assert error({"jobs": [JOB], "raw_dir": "gs://bucket/raw"}).splitlines()[0] == (
        "job.yaml: raw_dir: gs:// is not supported: raw_dir is a local folder or s3://bucket/prefix"
    )


def test_raw_dir_with_credentials_in_the_url_is_refused_without_showing_them() -> None:
    message = error({"jobs": [JOB], "raw_dir": "s3://AKIAEXAMPLE:very-secret@bucket/raw"})
    assert "credentials in the URL" in message
    assert "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead" in message
    assert "very-secret" not in message


def test_unknown_schema_lists_the_supported_ones() -> None:
    message = job_error(schema="trade")
    assert "jobs[0].schema: unknown schema 'trade'; supported: " in message
    assert "ohlcv-1d" in message
    message = job_error(schema=None, schemas=["trades", "bogus"])
    assert "jobs[0].schemas: unknown schema 'bogus'" in message
    assert "jobs:" not in message.replace("jobs[0]", "")


def test_exactly_one_of_schema_and_schemas() -> None:
    assert "give either `schema` or `schemas`" in job_error(schemas=["tbbo"])
    assert "give either `schema` or `schemas`" in job_error(schema=None)
    assert job_file(schema=None, schemas=["tbbo", "trades"]).jobs[0].schema_list == (
        "tbbo",
        "trades",
    )


@pytest.mark.parametrize(
    ("symbols", "stype_in", "message"),
    [
        (["ES.c.0"], "raw_symbol", "set stype_in: continuous"),
        (["ES.FUT"], "raw_symbol", "set stype_in: parent"),
        (["ESH4"], "continuous", "is not continuous"),
        (["ES"], "parent", "is not a parent symbol"),
        (["AAPL"], "instrument_id", "is not an instrument id"),
        (["ALL_SYMBOLS", "ES.c.0"], "continuous", "cannot be combined"),
        (["ES.c.0"], "smart", "jobs[0].stype_in: Input should be 'raw_symbol'"),
        ([], "continuous", "jobs[0].symbols: Tuple should have at least 1 item"),
    ],
)
def test_symbols_must_match_stype_in(symbols: list[str], stype_in: str, message: str) -> None:
    assert message in job_error(symbols=symbols, stype_in=stype_in)


def test_symbols_accept_a_scalar_ids_and_all_symbols() -> None:
    assert job_file(symbols="ES.c.0").jobs[0].symbols == ("ES.c.0",)
    assert job_file(symbols=[4916, "5002"], stype_in="instrument_id").jobs[0].symbols == (
        "4916",
        "5002",
    )
    assert job_file(symbols="ALL_SYMBOLS").jobs[0].symbols == ("ALL_SYMBOLS",)
    assert job_file(symbols=["BRK.B"], stype_in="raw_symbol").jobs[0].symbols == ("BRK.B",)


def test_an_api_key_in_key_env_var_is_refused_without_echoing_it() -> None:
    key = "db-" + "S3cr3t" * 5
    message = error({"jobs": [JOB], "databento": {"key_env_var": key}})
    assert "databento.key_env_var" in message
    assert key not in message


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("today", dt.datetime(2024, 3, 6, tzinfo=UTC)),
        ("yesterday", dt.datetime(2024, 3, 5, tzinfo=UTC)),
        ("today-3d", dt.datetime(2024, 3, 3, tzinfo=UTC)),
        ("today - 1w", dt.datetime(2024, 2, 28, tzinfo=UTC)),
        ("today+1d", dt.datetime(2024, 3, 7, tzinfo=UTC)),
        ("yesterday-1d", dt.datetime(2024, 3, 4, tzinfo=UTC)),
        ("2023-12-14", dt.datetime(2023, 12, 14, tzinfo=UTC)),
        ("2023-12-14T14:30:00Z", dt.datetime(2023, 12, 14, 14, 30, tzinfo=UTC)),
        ("2023-12-14T09:30:00-05:00", dt.datetime(2023, 12, 14, 14, 30, tzinfo=UTC)),
        (dt.date(2023, 12, 14), dt.datetime(2023, 12, 14, tzinfo=UTC)),
        (dt.datetime(2023, 12, 14, 14, 30), dt.datetime(2023, 12, 14, 14, 30, tzinfo=UTC)),
    ],
)
def test_dates_resolve_to_utc(spec: Any, expected: dt.datetime) -> None:
    assert resolve_date(spec, today=dt.date(2024, 3, 6)) == expected


@pytest.mark.parametrize("bad", ["tomorrow", "today-3", "today-1m", "2023-13-01", "last week"])
def test_bad_dates_name_the_key_and_the_accepted_forms(bad: str) -> None:
    message = job_error(start=bad)
    assert f"jobs[0].start: '{bad}' is not a date" in message
    assert "today-Nd" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [("start", "2024-13-45"), ("end", "2024-02-30"), ("start", "2024-1-1T25:00:00")],
)
def test_impossible_date_in_a_job_file_names_its_yaml_path(
    tmp_path: Path, key: str, value: str
) -> None:
    """Unquoted in YAML: PyYAML's own date parser would raise ValueError (a traceback)."""
    dates = {"start": "2024-01-01", "end": "2024-03-01", key: value}
    path = tmp_path / "job.yaml"
    path.write_text(
        "jobs:\n  - {name: a, dataset: GLBX.MDP3, schema: trades, symbols: [ESH4], "
        f"start: {dates['start']}, end: {dates['end']}}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_job_file(path)
    assert caught.value.exit_code == 2
    assert f"jobs[0].{key}: " in caught.value.message
    assert repr(value) in caught.value.message


def test_plain_yaml_dates_and_datetimes_in_a_job_file_still_load(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        "jobs:\n  - {name: a, dataset: GLBX.MDP3, schema: trades, symbols: [ESH4], "
        "start: 2024-01-01, end: 2024-01-02T12:00:00Z}\n"
    )
    assert load_job_file(path).jobs[0].window() == (
        dt.datetime(2024, 1, 1, tzinfo=UTC),
        dt.datetime(2024, 1, 2, 12, tzinfo=UTC),
    )


def test_start_must_be_before_end() -> None:
    assert "is not before end" in job_error(start=dt.date(2023, 12, 16))
    relative = job_file(start="today", end="yesterday").jobs[0]  # checked when resolved
    with pytest.raises(ConfigError, match="is not before end"):
        plan_chunks(relative, today=dt.date(2024, 3, 6))


def test_chunks_are_cut_at_utc_midnights_every_chunk_days() -> None:
    job = job_file(start=dt.date(2023, 12, 14), end=dt.date(2023, 12, 19), chunk_days=2).jobs[0]
    spans = [(c.start.day, c.end.day) for c in plan_chunks(job)]
    assert spans == [(14, 16), (16, 18), (18, 19)]

    intraday = job_file(
        start=dt.datetime(2023, 12, 14, 14, 30), end="2023-12-16T01:00:00Z", chunk_days=1
    ).jobs[0]
    chunks = plan_chunks(intraday)
    assert [(c.start.isoformat(), c.end.isoformat()) for c in chunks] == [
        ("2023-12-14T14:30:00+00:00", "2023-12-15T00:00:00+00:00"),
        ("2023-12-15T00:00:00+00:00", "2023-12-16T00:00:00+00:00"),
        ("2023-12-16T00:00:00+00:00", "2023-12-16T01:00:00+00:00"),
    ]
    assert chunks[0].relpath.name.startswith("2023-12-14T143000Z_2023-12-15.")


def test_every_schema_gets_its_own_chunks_and_files() -> None:
    job = job_file(schema=None, schemas=["trades", "tbbo"]).jobs[0]
    chunks = plan_chunks(job)
    assert [(c.schema, c.start.day) for c in chunks] == [
        ("trades", 14),
        ("trades", 15),
        ("tbbo", 14),
        ("tbbo", 15),
    ]
    assert str(chunks[2].relpath).startswith("GLBX.MDP3/tbbo/es/2023-12-14_2023-12-15.")
    assert chunks[0].request()["stype_out"] == "instrument_id"


def test_a_changed_request_is_a_different_chunk_file_and_daily_runs_reuse_names() -> None:
    base = plan_chunks(job_file().jobs[0])[0]
    other_symbols = plan_chunks(job_file(symbols=["ES.c.0", "NQ.c.0"]).jobs[0])[0]
    reordered = plan_chunks(job_file(symbols=["NQ.c.0", "ES.c.0"]).jobs[0])[0]
    assert base.relpath != other_symbols.relpath
    assert other_symbols.relpath == reordered.relpath

    daily = job_file(start="today-2d", end="today").jobs[0]
    monday = plan_chunks(daily, today=dt.date(2024, 3, 4))
    tuesday = plan_chunks(daily, today=dt.date(2024, 3, 5))
    assert monday[1].relpath == tuesday[0].relpath  # Sunday's chunk, fetched once


def test_select_jobs_by_name() -> None:
    loaded = validate_model(JobFile, {"jobs": [JOB, {**JOB, "name": "nq"}]}, "job.yaml")
    assert [j.name for j in loaded.select(())] == ["es", "nq"]
    assert [j.name for j in loaded.select(["nq"])] == ["nq"]
    with pytest.raises(ConfigError, match="no job named 'x'") as excinfo:
        loaded.select(["x"])
    assert "jobs in this file: es, nq" in excinfo.value.message
    assert excinfo.value.exit_code == 2


def test_target_db_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = validate_model(JobFile, {"jobs": [JOB], "db": "duckdb:////data/f.duckdb"}, "j")
    monkeypatch.delenv("HISTETL_DB", raising=False)
    assert loaded.target_db() == "duckdb:////data/f.duckdb"
    monkeypatch.setenv("HISTETL_DB", "postgresql://etl@db/market")
    assert loaded.target_db() == "postgresql://etl@db/market"
    assert loaded.target_db("duckdb:///x.duckdb") == "duckdb:///x.duckdb"
    monkeypatch.delenv("HISTETL_DB")
    assert job_file().target_db() == "duckdb:///./histetl.duckdb"


def test_yaml_errors_and_paths_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("jobs:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"job.yaml:\d+: not valid YAML"):
        load_job_file(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_job_file(tmp_path / "missing.yaml")


def test_job_spec_builds_from_python() -> None:
    spec = JobSpec.model_validate({**JOB, "chunk_days": 3})
    assert spec.chunk_days == 3
    assert len(plan_chunks(spec)) == 1


def test_the_readme_job_file_reference_lists_every_key_and_no_other() -> None:
    """The README's table of job-file keys is checked against the models."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")
    section = readme.split("### Job file", 1)[1].split("\n### ", 1)[0]
    documented = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            documented.update(re.findall(r"`([a-z_.\[\]]+)`", row.split("|")[1]))

    def keys(model: type[BaseModel], prefix: str) -> set[str]:
        out = set()
        for name, field in model.model_fields.items():
            key = prefix + (field.alias or name)
            inner = field.annotation
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                out |= keys(inner, key + ".")
            else:
                out.add(key)
        return out

    expected = keys(JobFile, "") - {"jobs"} | keys(JobSpec, "jobs[].") | {"jobs"}
    assert documented == expected
