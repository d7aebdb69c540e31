"""Connecting to PostgreSQL: URIs checked up front, timeout defaults, error classes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg.conninfo
import pytest

from histetl.errors import ConfigError
from histetl.synth import SynthSpec, write_dbn
from histetl.targets import RetryPolicy
from histetl.targets.postgres.conn import classify, parse_target, server_answers, with_timeouts
from tests.support.pgserver import PgServer

HISTETL = [sys.executable, "-m", "histetl.cli"]


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://bob@db:99999/x",
        "postgresql://bob@db:0/x",
        "postgresql://bob@db:54a/x",
        "postgresql://bob@db/x?port=70000",
        "postgresql://bob@h1:5432,h2:99999/x",
        "postgresql://bob@[::1:5432/x",
        "postgresql://bob@db/x?connect_timeout=soon",
        "host=db port=99999 dbname=x",
        "host=db password='unterminated",
    ],
)
def test_parse_target_when_libpq_would_refuse_raises_config_error(uri: str) -> None:
    with pytest.raises(ConfigError):
        parse_target(uri)


@pytest.mark.parametrize(
    ("uri", "label"),
    [
        ("postgresql://bob:pw@db:6543/prod", "PostgreSQL at db:6543 (user bob, database prod)"),
        ("postgresql://[::1]:5433/x", "PostgreSQL at ::1:5433 (database x)"),
        ("postgresql:///x?host=/run/pg", "PostgreSQL at /run/pg (database x)"),
        (
            "host=db port=5434 user=al dbname=d password=pw",
            "PostgreSQL at db:5434 (user al, database d)",
        ),
        ("postgresql://h1:1,h2:2/x", "PostgreSQL at h1:1 (+1 more) (database x)"),
    ],
)
def test_parse_target_names_host_user_and_database(uri: str, label: str) -> None:
    assert parse_target(uri).label == label
    assert "pw" not in str(parse_target(uri).params)


def test_with_timeouts_adds_defaults_and_keeps_what_the_uri_sets() -> None:
    policy = RetryPolicy(timeout_s=7, lock_timeout_s=3, connect_timeout_s=4)
    uri = "postgresql://u@h/d?options=-csearch_path%3Da&connect_timeout=9"
    params = psycopg.conninfo.conninfo_to_dict(with_timeouts(uri, policy))
    assert params["connect_timeout"] == "9"  # the URI's own wins
    assert params["options"] == (
        "-csearch_path=a -c lock_timeout=3000 -c idle_in_transaction_session_timeout=7000"
    )
    assert (params["keepalives"], params["tcp_user_timeout"]) == ("1", "7000")
    dsn = with_timeouts("host=h password='a b' options='-c lock_timeout=1'", policy)
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    assert params["password"] == "a b"
    assert params["connect_timeout"] == "4"
    assert params["options"] == "-c lock_timeout=1 -c idle_in_transaction_session_timeout=7000"


class _DriverError(Exception):
    def __init__(self, text: str, sqlstate: str | None = None) -> None:
        super().__init__(text)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("text", "sqlstate", "kind"),
    [
        ('FATAL:  password authentication failed for user "bob"', None, "auth"),
        ("fe_sendauth: no password supplied", None, "auth"),
        ('FATAL:  database "nosuch" does not exist', None, "missing"),
        ('FATAL:  role "nouser" does not exist', None, "missing"),
        ("ERROR:  permission denied for schema public", "42501", "permission"),
        ("Connection refused", None, "transient"),
        ("server closed the connection unexpectedly", None, "transient"),
        ("ERROR:  deadlock detected", "40P01", "transient"),
        ("ERROR:  could not serialize access", "40001", "transient"),
        ("ERROR:  canceling statement due to lock timeout", "55P03", "lock"),
        ('could not translate host name "nosuch.invalid"', None, "config"),
        ('invalid URI query parameter: "bogus"', None, "parameter"),
        ('ERROR:  unrecognized configuration parameter "x"', "42704", "parameter"),
        ("ERROR:  division by zero", "22012", "other"),
    ],
)
def test_classify_retries_only_what_may_succeed_later(
    text: str, sqlstate: str | None, kind: str
) -> None:
    assert classify(_DriverError(text, sqlstate)) == kind


def test_replay_when_port_out_of_range_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=10, seed=1), path)
    for uri in ("postgresql://bob:pw99@127.0.0.1:99999/x", "host=127.0.0.1 port=99999"):
        result = subprocess.run(
            [*HISTETL, "replay", str(path), "--db", uri],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        assert result.returncode == 2, result.stderr
        assert "port '99999' is not a TCP port (1-65535)" in result.stderr
        assert "Traceback" not in result.stderr
        assert "pw99" not in result.stderr


def test_replay_when_uri_has_an_unknown_parameter_is_a_config_error(
    pg_server: PgServer, tmp_path: Path
) -> None:
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=10, seed=1), path)
    result = subprocess.run(
        [*HISTETL, "replay", str(path), "--db", pg_server.uri + "?bogus=1"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert 'cannot connect: invalid URI query parameter: "bogus"' in result.stderr
    assert "attempt" not in result.stderr


def test_server_answers_when_postgres_listens_and_not_when_silent_or_gone(
    pg_server: PgServer,
) -> None:
    """The stall watchdog's question during a lock wait: a live server answers an SSLRequest
    at once; a socket that accepts (in the kernel) but never reads, like a stopped server,
    does not within the timeout; a closed port refuses."""
    assert server_answers(socket.AF_INET, (pg_server.host, pg_server.port), 5.0)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # never accepted, never answered
        started = time.monotonic()
        assert not server_answers(socket.AF_INET, silent.getsockname(), 0.5)
        assert 0.4 < time.monotonic() - started < 5
        address = silent.getsockname()
    assert not server_answers(socket.AF_INET, address, 0.5)
