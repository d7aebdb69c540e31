"""histetl.targets.probe: `loaded_files` answers "already loaded" from a real ledger (DuckDB
and PostgreSQL) and None whenever it cannot answer cheaply, never an error."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.source.files import expand_paths, sha256_file
from histetl.synth import SynthSpec, write_dbn
from histetl.targets.base import RetryPolicy
from histetl.targets.probe import Loaded, loaded_files
from tests.support.pgserver import PgServer, free_port, fresh_schema

POLICY = RetryPolicy()
UNKNOWN = "0" * 64


@pytest.fixture(params=["duckdb", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'p.duckdb'}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    with fresh_schema(server.uri) as (uri, _schema):
        yield uri


def load_two(tmp_path: Path, db: str) -> list[str]:
    paths = []
    for seed, schema in enumerate(("trades", "mbp-1")):
        paths.append(tmp_path / f"{schema}.dbn")
        write_dbn(SynthSpec(schema=schema, records=200, seed=seed), paths[-1])
    options = ReplayOptions(db=db, quarantine_dir=tmp_path / "q")
    assert not Replayer(options).run(expand_paths(paths)).failed
    return [sha256_file(p) for p in paths]


def test_loaded_files_are_the_ledger_rows_of_the_digests_asked(tmp_path: Path, target: str) -> None:
    trades, book = load_two(tmp_path, target)

    found = loaded_files(target, {trades, book, UNKNOWN}, POLICY)
    one = loaded_files(target, {book}, POLICY)
    none = loaded_files(target, {UNKNOWN}, POLICY)

    assert found is not None
    assert sorted(found) == sorted(
        [
            Loaded(trades, "trades", "GLBX.MDP3", "trades", 200),
            Loaded(book, "mbp_1", "GLBX.MDP3", "mbp-1", 200),
        ]
    )
    assert one == [Loaded(book, "mbp_1", "GLBX.MDP3", "mbp-1", 200)]
    assert none == []


def test_a_duckdb_file_not_made_yet_has_loaded_nothing(tmp_path: Path) -> None:
    db = tmp_path / "later.duckdb"

    assert loaded_files(f"duckdb:///{db}", {UNKNOWN}, POLICY) == []
    assert not db.exists()


@pytest.mark.parametrize(
    ("uri", "digests"),
    [
        ("duckdb:///whatever.duckdb", set()),  # nothing asked
        ("duckdb:///whatever.duckdb", {"not-a-digest"}),  # never SQL from anything but hex
        ("duckdb:///whatever.duckdb", {"AB" * 32}),  # upper-case hex is not a digest
        ("duckdb:///:memory:", {UNKNOWN}),  # a fresh memory database has no ledger
        ("delta:///lake", {UNKNOWN}),  # no light lookup for a lake
        ("mysql://h/db", {UNKNOWN}),  # not a target at all: the pipeline says so
    ],
)
def test_anything_it_cannot_answer_cheaply_is_none(uri: str, digests: set[str]) -> None:
    assert loaded_files(uri, digests, POLICY) is None


def test_a_duckdb_file_without_a_ledger_is_none(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "empty.duckdb"
    duckdb.connect(str(path)).close()

    assert loaded_files(f"duckdb:///{path}", {UNKNOWN}, POLICY) is None


def test_an_unreachable_server_is_none_and_quick() -> None:
    uri = f"postgresql://histetl:secret@127.0.0.1:{free_port()}/nothing"

    started = time.monotonic()
    answer = loaded_files(uri, {UNKNOWN}, POLICY)

    assert answer is None
    assert time.monotonic() - started < 5  # gives up, the pipeline's retries take over
