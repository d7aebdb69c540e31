"""A lake's ledger: each file's record lives in the metadata of the commit that loaded it (key
`histetl.ledger`), beside the application transaction `histetl:<sha256>` whose version is that
commit's table version. A rerun's skip reads the transaction version from the table's snapshot
and the record from that one commit file; `status` and `verify` read every commit's."""

from __future__ import annotations

import datetime as dt
import json

from deltalake import DeltaTable

from histetl.targets.base import LedgerEntry

LEDGER_KEY = "histetl.ledger"


def app_id(sha256: str) -> str:
    return f"histetl:{sha256}"


def commit_path(table: str, version: int) -> str:
    """The commit file of `version`, relative to the lake's root (the Delta log's naming)."""
    return f"{table}/_delta_log/{version:020d}.json"


def record(raw: str) -> LedgerEntry:
    """A ledger record as stored in a commit's metadata."""
    fields = json.loads(raw)
    fields["loaded_at"] = dt.datetime.fromisoformat(fields["loaded_at"])
    return LedgerEntry(**fields)


def record_in_commit(data: bytes) -> LedgerEntry | None:
    """The ledger record of a commit file's `commitInfo` action, if it has one."""
    for line in data.splitlines():
        info = json.loads(line).get("commitInfo")
        if info is not None and info.get(LEDGER_KEY):
            return record(info[LEDGER_KEY])
    return None


def records(dtable: DeltaTable) -> list[LedgerEntry]:
    """Every record in the table's commits (the whole history is read)."""
    return [record(raw) for commit in dtable.history() if (raw := commit.get(LEDGER_KEY))]
