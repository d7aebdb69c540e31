"""The one redaction function: every URI and DSN form libpq reads, with its secrets hidden."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg.conninfo
import pytest

from histetl.errors import ConfigError
from histetl.secrets import dsn_dict, parse_dsn, passwords, redact, scrub
from histetl.synth import Defects, SynthSpec, write_dbn
from tests.support.pgserver import PgServer, start_postgres


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql://bob:s3cret@db:5432/x", "postgresql://bob:***@db:5432/x"),
        ("postgres://bob:p%40ss%2Fw@db/x", "postgres://bob:***@db/x"),
        ("postgresql://bob:raw@at@db/x", "postgresql://bob:***@db/x"),
        ("postgresql://bob@db/x?password=s3cret", "postgresql://bob@db/x?password=***"),
        (
            "postgresql://db/x?sslmode=require&password=s3cret&passfile=/home/b/.pgpass",
            "postgresql://db/x?sslmode=require&password=***&passfile=/home/b/.pgpass",
        ),
        ("postgresql://db/x?sslpassword=k3y", "postgresql://db/x?sslpassword=***"),
        ("postgresql://a:b@h1:5432,h2:5433/x", "postgresql://a:***@h1:5432,h2:5433/x"),
        ("postgresql://bob@db/x", "postgresql://bob@db/x"),
        ("duckdb:///./histetl.duckdb", "duckdb:///./histetl.duckdb"),
        ("https://user:tok@hist.databento.com", "https://user:***@hist.databento.com"),
        ("host=db password=s3cret dbname=x", "host=db password=*** dbname=x"),
        ("host=db password = 's 3\\'c' dbname=x", "host=db password = *** dbname=x"),
        ("password=a\\ b host=db", "password=*** host=db"),
        ("host=db dbname=x", "host=db dbname=x"),
    ],
)
def test_redact_hides_every_password_form_and_keeps_the_rest(uri: str, shown: str) -> None:
    assert redact(uri) == shown


@pytest.mark.parametrize(
    "dsn",
    [
        "host=db password=s3cret dbname=x",
        "host = db   password='a b\\'c'  dbname=x",
        "password='' host=db",
        "password=a\\ b\\\\c host=db",
        "options='-c search_path=a,b' password=x port=5432",
        "host= dbname=c",
        "application_name='it\\'s' host=h",
        "host=h\tdbname=d\n",
    ],
)
def test_parse_dsn_when_valid_equals_libpq(dsn: str) -> None:
    expected = psycopg.conninfo.conninfo_to_dict(dsn)
    assert dsn_dict(dsn) == {k: v for k, v in expected.items() if v is not None}


@pytest.mark.parametrize("dsn", ["host=db password", "host=db password='sec ret"])
def test_parse_dsn_when_invalid_refuses_like_libpq_without_echoing_values(dsn: str) -> None:
    with pytest.raises(psycopg.ProgrammingError):
        psycopg.conninfo.conninfo_to_dict(dsn)
    with pytest.raises(ConfigError) as err:
        parse_dsn(dsn)
    assert "sec" not in err.value.message
    assert "db" not in err.value.what


def test_redact_when_dsn_is_unparsable_still_hides_the_password() -> None:
    assert "hunter2" not in redact("host=db password=hunter2 user='bob")


def test_scrub_replaces_the_uri_and_every_literal_password() -> None:
    uri = "postgresql://bob:p%40ss@db/x?password=other"
    text = f"failed for {uri}: p@ss rejected; other too; p%40ss"
    cleaned = scrub(text, uri)
    assert all(secret not in cleaned for secret in ("p@ss", "p%40ss", "other"))
    assert "postgresql://bob:***@db/x?password=***" in cleaned


def test_passwords_of_a_dsn_include_the_quoted_form() -> None:
    assert passwords("password='a b' host=x") == ["'a b'", "a b"]


# -- the CLI against a real password-protected PostgreSQL: no secret anywhere -------------------

PASSWORD = "s3cr@t/p w'x%"  # userinfo, query and DSN quoting all matter for these characters
HISTETL = [sys.executable, "-m", "histetl.cli"]


@pytest.fixture(scope="module")
def scram_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    server = start_postgres(tmp_path_factory.mktemp("pg"), private=True, password=PASSWORD)
    yield server
    server.stop()


def uris(host: str, port: int) -> dict[str, str]:
    dsn_password = PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
    encoded = quote(PASSWORD, safe="")
    return {
        "userinfo": f"postgresql://postgres:{encoded}@{host}:{port}/postgres",
        "query": f"postgresql://postgres@{host}:{port}/postgres?password={encoded}",
        "dsn": f"host={host} port={port} user=postgres dbname=postgres password='{dsn_password}'",
    }


def secret_forms() -> list[bytes]:
    dsn_password = PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
    return [s.encode() for s in (PASSWORD, quote(PASSWORD, safe=""), dsn_password, "s3cr@t")]


def assert_no_secret(where: str, data: bytes) -> None:
    for secret in secret_forms():
        assert secret not in data, f"password ({secret!r}) shown in {where}"


@pytest.mark.parametrize("form", ["userinfo", "query", "dsn"])
@pytest.mark.parametrize("reachable", [True, False], ids=["real-server", "wrong-host"])
def test_cli_with_password_in_any_form_never_shows_it(
    scram_server: PgServer, tmp_path: Path, form: str, reachable: bool
) -> None:
    uri = uris("127.0.0.1", scram_server.port if reachable else 1)[form]
    raw = tmp_path / "t.dbn.zst"
    seed = ["userinfo", "query", "dsn"].index(form) + 10 * reachable
    write_dbn(SynthSpec(schema="trades", records=200, seed=seed, defects=Defects(zero_size=3)), raw)
    logs, quarantine, report = tmp_path / "logs", tmp_path / "q", tmp_path / "report.json"
    env = {**os.environ, "HISTETL_LOG_DIR": str(logs)}
    retry = ["--db-retries", "1"]
    commands = [
        ["replay", str(raw), "--report", str(report), "--quarantine-dir", str(quarantine), *retry],
        ["db", "init", *retry],  # one attempt: the wrong host fails at once, not after backoff
        ["status", *retry],
        ["query", "--schema", "trades", "--limit", "3"],
        ["verify", "--report", str(tmp_path / "verify.json")],
        ["resample", "--interval", "5m"],  # nothing loaded for ohlcv-1m: exit 2
    ]
    for command in commands:
        result = subprocess.run(
            [*HISTETL, *command, "--db", uri],
            capture_output=True,
            env=env,
            cwd=tmp_path,
            check=False,
            timeout=120,
        )
        shown = result.stdout + result.stderr
        assert b"Traceback" not in shown, shown.decode()
        assert_no_secret(f"the output of {command[0]}", shown)
        if reachable:
            expected = {"verify": (0, 1), "resample": (2,)}.get(command[0], (0,))
            assert result.returncode in expected, shown.decode()  # verify may find gaps
        else:
            assert result.returncode == 1, shown.decode()
            assert b"PostgreSQL at 127.0.0.1:1" in shown, shown.decode()
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != raw]
    assert any(p.suffix == ".log" for p in written)
    if reachable:
        assert report.is_file()
        assert any(p.suffix == ".parquet" for p in written)
        assert b"***" in report.read_bytes()
    for path in written:
        assert_no_secret(str(path), path.read_bytes())


def test_wrong_password_fails_at_once_naming_host_user_and_database(
    scram_server: PgServer, tmp_path: Path
) -> None:
    uri = f"postgresql://postgres:wrong-pw@127.0.0.1:{scram_server.port}/postgres"
    started = time.monotonic()
    result = subprocess.run(
        [*HISTETL, "status", "--db", uri], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "attempt" not in result.stderr  # no retries: one try, one line
    assert time.monotonic() - started < 20
    assert result.stderr.startswith(
        f"error: PostgreSQL at 127.0.0.1:{scram_server.port} (user postgres, database "
        'postgres): cannot connect: password authentication failed for user "postgres"\n'
    ), result.stderr
    assert "hint: check the user and password" in result.stderr
    assert "wrong-pw" not in result.stderr
    assert "Traceback" not in result.stderr
