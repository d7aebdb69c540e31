"""A lake's ledger: a rerun finds a loaded file's record in the one commit its transaction
version names (not by reading the history), and in a lake whose transaction versions counted
loads (earlier histetl), by the history."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

from deltalake import CommitProperties, Transaction

from histetl.targets import read_ledger
from histetl.targets.delta.ledger import LEDGER_KEY, app_id
from tests.targets.delta.test_sink import Lake
from tests.targets.duckdb.test_sink import replay, trades


def _rerun(lake: Lake, path: Path, tmp_path: Path) -> dict[str, Any]:
    report = tmp_path / "report.json"
    subprocess.run([*replay(lake.db, [path], tmp_path), "--report", str(report)], check=True)
    (file,) = json.loads(report.read_text())["files"]
    return dict(file)


def _commit(lake: Lake, record: str, txn: Transaction | None = None) -> None:
    """A commit without data whose metadata holds `record` (and the transaction `txn`)."""
    table = lake.table()
    table.create_write_transaction(
        [],
        "append",
        table.schema(),
        ["date"],
        commit_properties=CommitProperties(
            custom_metadata={LEDGER_KEY: record}, app_transactions=[txn] if txn else None
        ),
    )


def _lake(tmp_path: Path) -> tuple[Lake, list[Path]]:
    lake = Lake(f"delta:///{tmp_path / 'lake'}", str(tmp_path / "lake"))
    return lake, trades(tmp_path)


def test_rerun_skips_a_loaded_file_by_its_own_commit_without_reading_the_history(
    tmp_path: Path,
) -> None:
    """Another commit's record is unreadable: reading the history would fail the rerun."""
    lake, (first, second) = _lake(tmp_path)
    subprocess.run(replay(lake.db, [first, second], tmp_path), check=True)
    _commit(lake, "not a record")
    file = _rerun(lake, second, tmp_path)
    assert (file["status"], file["skipped"]) == ("skipped", 5000)


def test_rerun_in_a_lake_whose_transaction_versions_counted_loads_skips_by_the_history(
    tmp_path: Path,
) -> None:
    """The second file recorded as earlier histetl did (transaction version 1, in commit 2):
    version 1's commit holds the first file's record, so the history decides."""
    lake, (first, second) = _lake(tmp_path)
    scratch = Lake(f"delta:///{tmp_path / 'scratch'}", str(tmp_path / "scratch"))
    subprocess.run(replay(scratch.db, [second], tmp_path), check=True)
    (entry,) = read_ledger(scratch.db)
    subprocess.run(replay(lake.db, [first], tmp_path), check=True)
    fields = dataclasses.asdict(entry)
    fields["loaded_at"] = entry.loaded_at.isoformat()
    _commit(lake, json.dumps(fields), Transaction(app_id(entry.sha256), 1))
    assert lake.table().transaction_version(app_id(entry.sha256)) == 1
    file = _rerun(lake, second, tmp_path)
    assert (file["status"], file["skipped"]) == ("skipped", 5000)
