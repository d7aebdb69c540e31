"""Maintenance of a Delta Lake target (`histetl lake optimize` / `vacuum`), with safe defaults.

Optimize compacts each table's small data files (one per loaded file and day) into larger
ones, optionally Z-ordered; vacuum deletes the data files no version within the retention
needs. Neither touches what makes loads exactly once: the application transaction ids
(`txn` actions, kept in every snapshot and checkpoint) and the ledger records in the commit
metadata. Before it commits, each sets the table property that stops any writer from deleting
expired commit files (`delta.enableExpiredLogCleanup=false`, which the lake's tables get when
created), so the commit history holding the ledger stays whole.

Vacuum is a dry run unless `apply` is set, keeps the table's retention
(`delta.deletedFileRetentionDuration`, default 7 days) unless `break_time_travel` allows a
shorter one, and deletes files no commit references (left by a killed run) only when they are
older than the retention and at least `MIN_ORPHAN_AGE_HOURS`: a running load writes its data
files before the commit that references them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import DeltaError

from histetl import objstore
from histetl.errors import ConfigError, LoadError, first_line
from histetl.interrupt import CANCEL, stop_on_signals
from histetl.targets import backend_of
from histetl.targets.delta.layout import KEEP_LOG, NO_LOG_CLEANUP, PARTITION
from histetl.targets.delta.sink import DeltaSink, existing_lake

RETENTION_KEY = "delta.deletedFileRetentionDuration"
DEFAULT_RETENTION_HOURS = 7 * 24  # Delta's default for RETENTION_KEY
MIN_ORPHAN_AGE_HOURS = 1  # files no commit references: younger ones may be a load's, unwritten
_T = TypeVar("_T")
_UNIT_HOURS = {
    "nanosecond": 1 / 3.6e12,
    "microsecond": 1 / 3.6e9,
    "millisecond": 1 / 3.6e6,
    "second": 1 / 3600,
    "minute": 1 / 60,
    "hour": 1,
    "day": 24,
    "week": 7 * 24,
}


@dataclass(frozen=True)
class Optimized:
    table: str
    files_removed: int
    files_added: int
    partitions: int

    def line(self) -> str:
        if not self.files_removed:
            return f"{self.table}: nothing to compact"
        return (
            f"{self.table}: {self.files_removed} files compacted into {self.files_added} "
            f"({self.partitions} partitions)"
        )


@dataclass(frozen=True)
class Vacuumed:
    table: str
    files: list[str]  # deleted, or (dry run) to delete
    retention_hours: int
    applied: bool

    def line(self) -> str:
        age = f"unneeded for {self.retention_hours} h"
        if self.applied:
            return f"{self.table}: {len(self.files)} files deleted ({age})"
        return f"{self.table}: {len(self.files)} files to delete ({age}); dry run, none deleted"


def optimize(
    uri: str,
    tables: Sequence[str] = (),
    zorder: Sequence[str] = (),
    target_size_mb: int | None = None,
) -> list[Optimized]:
    """Compact every table of the lake at `uri` (or those named), Z-ordered by `zorder` if
    given. A concurrent load's commit and this one are retried by whichever comes second."""
    size = target_size_mb << 20 if target_size_mb else None

    def one(name: str, dtable: DeltaTable) -> Optimized:
        if zorder:
            schema: Any = dtable.schema()
            columns = [f.name for f in schema.fields if f.name != PARTITION]
            _check_known(zorder, columns, f"no column {{}} to Z-order {name} by", "--zorder")
        _keep_history(dtable)
        if zorder:
            metrics = dtable.optimize.z_order(
                list(zorder), target_size=size, post_commithook_properties=KEEP_LOG
            )
        else:
            metrics = dtable.optimize.compact(target_size=size, post_commithook_properties=KEEP_LOG)
        return Optimized(
            name,
            int(metrics["numFilesRemoved"]),
            int(metrics["numFilesAdded"]),
            int(metrics["partitionsOptimized"]),
        )

    return _each_table(uri, tables, one)


def vacuum(
    uri: str,
    tables: Sequence[str] = (),
    retention_hours: int | None = None,
    apply: bool = False,
    break_time_travel: bool = False,
) -> list[Vacuumed]:
    """Delete (with `apply`; else list) the data files of each table that no version within
    `retention_hours` (default: the table's retention) references. A retention shorter than
    the table's is refused unless `break_time_travel`: versions older than it can no longer
    be read."""

    def one(name: str, dtable: DeltaTable) -> Vacuumed:
        kept = table_retention_hours(dtable, name)
        hours = kept if retention_hours is None else retention_hours
        if hours < kept and not break_time_travel:
            raise ConfigError(
                f"--retention-hours {hours} is shorter than the table's retention ({kept} h, "
                f"{RETENTION_KEY}): versions older than {hours} h could no longer be read",
                where=name,
                hint=f"keep --retention-hours >= {kept}, or add --break-time-travel",
            )
        if apply:
            _keep_history(dtable)
        files = dtable.vacuum(
            retention_hours=hours,
            dry_run=not apply,
            enforce_retention_duration=not break_time_travel,
            # unreferenced files too, once they are surely no running load's
            full=hours >= MIN_ORPHAN_AGE_HOURS,
            commit_properties=CommitProperties(max_commit_retries=20),
            post_commithook_properties=KEEP_LOG,
        )
        return Vacuumed(name, sorted(files), hours, apply)

    if retention_hours is not None and retention_hours < 0:
        raise ConfigError(
            f"--retention-hours must be 0 or more, not {retention_hours}",
            where="--retention-hours",
        )
    return _each_table(uri, tables, one)


def table_retention_hours(dtable: DeltaTable, name: str) -> int:
    """The table's `delta.deletedFileRetentionDuration` in whole hours (rounded up)."""
    text = dtable.metadata().configuration.get(RETENTION_KEY)
    if text is None:
        return DEFAULT_RETENTION_HOURS
    match = re.fullmatch(r"\s*interval\s+(\d+)\s+([a-z]+?)s?\s*", text.lower())
    if match is None or match[2] not in _UNIT_HOURS:
        raise LoadError(
            f"cannot read the table's retention {RETENTION_KEY}={text!r}",
            where=name,
            hint="set it like 'interval 7 days', or pass --retention-hours",
        )
    hours = int(match[1]) * _UNIT_HOURS[match[2]]
    return int(hours) + (hours > int(hours))


def _each_table(uri: str, names: Sequence[str], work: Callable[[str, DeltaTable], _T]) -> list[_T]:
    """`work` on each table of the lake (or those named), stopping between tables on Ctrl-C;
    storage and Delta failures as one-line errors."""
    sink = _open_lake(uri)
    available = sink.table_names()
    _check_known(names, available, "no table {} in the lake", "--table")
    out = []
    with stop_on_signals():
        for name in names or available:
            CANCEL.check()
            where = sink.table_uri(name)
            dtable = sink.open_table(name)
            if dtable is None:  # listed, but not a table
                continue
            try:
                out.append(work(name, dtable))
            except OSError as exc:
                raise objstore.storage_error(exc, where) from None
            except DeltaError as exc:
                raise LoadError(
                    f"Delta maintenance failed: {first_line(exc)}",
                    where=where,
                    hint="run it again; loads are not affected",
                ) from None
    return out


def _open_lake(uri: str) -> DeltaSink:
    """The lake to maintain; any other target is refused."""
    if backend_of(uri) != "delta":
        raise ConfigError(
            "histetl lake works on Delta Lake targets only",
            where="--db",
            hint="use --db delta:///path/to/lake or --db delta+s3://bucket/prefix",
        )
    return existing_lake(uri)


def _keep_history(dtable: DeltaTable) -> None:
    """Set the table property that keeps expired commit files (a table made by an older
    histetl, or by another writer, may lack it): optimize ignores the hook option."""
    config = dtable.metadata().configuration
    if any(config.get(key) != value for key, value in NO_LOG_CLEANUP.items()):
        dtable.alter.set_table_properties(NO_LOG_CLEANUP, post_commithook_properties=KEEP_LOG)


def _check_known(given: Sequence[str], allowed: list[str], what: str, option: str) -> None:
    """ConfigError naming the `given` values not `allowed` (`what` formats them) and the
    allowed ones."""
    unknown = [value for value in given if value not in allowed]
    if unknown:
        raise ConfigError(
            what.format(", ".join(unknown)),
            where=option,
            hint=f"choose from {', '.join(allowed) or '(none: nothing loaded yet)'}",
        )
