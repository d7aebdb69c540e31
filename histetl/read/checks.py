"""The checks of `histetl verify` (see `histetl.read.verify` for what each one proves), each a
function of the run's `Context` and one table, returning a `Check`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from histetl.read.calendars import _merge, buckets, calendar_for, covered, status_ranges
from histetl.read.database import Database
from histetl.read.query import DEFINITION_TABLE
from histetl.read.resample import parse_interval
from histetl.schemas import TableSpec
from histetl.sqltext import quote
from histetl.times import format_ns
from histetl.validate import RULES_COLUMN, RuleBook, RuleSet

if TYPE_CHECKING:
    from histetl.read.verify import VerifyOptions

Status = Literal["PASS", "FAIL", "WARN", "SKIP"]
_DAY_NS = 86_400 * 10**9


@dataclass
class Check:
    name: str
    table: str
    status: Status
    detail: str
    examples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LedgerTotals:
    """One table's ledger rows summed: rows loaded, loaded + duplicates, datasets, schemas."""

    loaded: int = 0
    upper: int = 0
    datasets: tuple[str, ...] = ()
    schemas: tuple[str, ...] = ()


@dataclass
class Context:
    db: Database
    options: VerifyOptions
    start: int | None
    end: int | None
    ledger: dict[str, LedgerTotals]

    rulesets: dict[tuple[str, str], RuleSet] = field(default_factory=dict)

    def where(self, table: str, spec: TableSpec) -> list[str]:
        return self.db.time_range(spec.index_ts, self.start, self.end)

    def ruleset(self, book: RuleBook, spec: TableSpec, dataset: str) -> RuleSet:
        """The rules of a schema and dataset; no file range (a table has no file per row)."""
        key = (spec.schema, dataset)
        if key not in self.rulesets:
            self.rulesets[key] = book.for_file(spec, dataset, None, None)
        return self.rulesets[key]


def _has(ctx: Context, table: str, columns: Sequence[str]) -> bool:
    return set(columns) <= set(ctx.db.column_names(table))


def bar_interval(table: str) -> int | None:
    match = re.fullmatch(r"ohlcv_(\d+[smhd])", table)
    if match is None:
        return None
    interval = parse_interval(match[1])
    return interval if 60 * 10**9 <= interval < _DAY_NS else None


def _key_sql(db: Database, spec: TableSpec, columns: Sequence[str]) -> list[str]:
    ts_columns = {c.name for c in spec.columns if c.kind == "timestamp"}
    return [db.time_ns(c) if c in ts_columns else quote(c) for c in columns]


def duplicates_check(ctx: Context, table: str, spec: TableSpec) -> Check:
    db = ctx.db
    keys = {"primary key": list(spec.key)}
    if table.startswith("ohlcv_"):
        keys["one bar per instrument, publisher and time"] = [
            "ts_event",
            "instrument_id",
            "publisher_id",
        ]
    where = ctx.where(table, spec)
    filter_sql = (" WHERE " + " AND ".join(where)) if where else ""
    found: list[str] = []
    examples: list[str] = []
    for label, columns in keys.items():
        if not _has(ctx, table, columns):
            return Check(
                "duplicates", table, "SKIP", f"no {', '.join(columns)} columns (mapped table?)"
            )
        key = _key_sql(db, spec, columns)
        grouped = (
            f"SELECT {', '.join(f'{k} AS k{i}' for i, k in enumerate(key))}, count(*) AS n "
            f"FROM {quote(table)}{filter_sql} GROUP BY {', '.join(key)} HAVING count(*) > 1"
        )
        groups, extra = db.rows(
            f"SELECT count(*), CAST(coalesce(sum(n - 1), 0) AS BIGINT) FROM ({grouped}) d"
        )[0]
        if groups:
            found.append(f"{label}: {groups} key(s), {extra} extra row(s)")
            for row in db.rows(f"{grouped} LIMIT {ctx.options.examples}"):
                values = [format_ns(int(v)) if i == 0 else str(v) for i, v in enumerate(row[:-1])]
                examples.append(
                    f"{label} ({', '.join(columns)}) = ({', '.join(values)}): {row[-1]} rows"
                )
    if found:
        return Check(
            "duplicates", table, "FAIL", "; ".join(found), examples[: ctx.options.examples]
        )
    return Check("duplicates", table, "PASS", "no duplicate keys")


def rules_check(ctx: Context, table: str, spec: TableSpec, book: RuleBook) -> Check:
    db = ctx.db
    names = db.column_names(table)
    if not set(spec.column_names) <= set(names):
        return Check("rules", table, "SKIP", "not the canonical columns (mapped table?)")
    datasets = ctx.ledger.get(table, LedgerTotals()).datasets
    fallback = datasets[0] if len(datasets) == 1 else ""
    counts: dict[str, int] = {}
    errors: set[str] = set()
    bad_rows = rows = 0
    examples: list[str] = []
    for batch in db.read(table, where=ctx.where(table, spec)):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        parts = (
            frame.partition_by("publisher_id", as_dict=True)
            if "publisher_id" in names
            else {(None,): frame}
        )
        for (publisher,), part in parts.items():
            ruleset = ctx.ruleset(book, spec, _dataset(publisher, fallback))
            errors |= set(ruleset.errors)
            split = ruleset.split(part, first_ordinal=rows, source=f"table {table}")
            rows += part.height
            for rule, n in split.counts.items():
                counts[rule] = counts.get(rule, 0) + n
            bad_rows += split.invalid.height
            for row in split.invalid.head(ctx.options.examples - len(examples)).iter_rows(
                named=True
            ):
                examples.append(
                    f"{row[spec.index_ts]} {row.get('symbol')} ({row['instrument_id']}): "
                    f"{', '.join(row[RULES_COLUMN])}"
                )
    broken = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda x: -x[1]))
    if bad_rows:
        return Check(
            "rules",
            table,
            "FAIL",
            f"{bad_rows} of {rows} rows break error rules ({broken})",
            examples,
        )
    if counts:
        return Check("rules", table, "WARN", f"{rows} rows; warn rules broken ({broken})")
    return Check("rules", table, "PASS", f"{rows} rows, no rule broken")


@cache
def _publisher_dataset(publisher: int) -> str:
    from databento.common.publishers import Publisher

    try:
        return str(Publisher.from_int(publisher).dataset.value)
    except ValueError:
        return ""


def _dataset(publisher: object, fallback: str) -> str:
    return (_publisher_dataset(int(publisher)) if isinstance(publisher, int) else "") or fallback


def ledger_check(ctx: Context, table: str) -> Check:
    if ctx.start is not None or ctx.end is not None:
        return Check(
            "ledger", table, "SKIP", "not with --start/--end (the ledger counts whole files)"
        )
    count = int(ctx.db.rows(f"SELECT count(*) FROM {quote(table)}")[0][0])
    totals = ctx.ledger.get(table, LedgerTotals())
    loaded, upper = totals.loaded, totals.upper
    if count == loaded:
        return Check("ledger", table, "PASS", f"{count} rows, as the ledger says")
    if loaded < count <= upper:
        return Check(
            "ledger", table, "PASS",
            f"{count} rows; ledger: {loaded} loaded + up to {upper - loaded} reloaded with --force",
        )  # fmt: skip
    if count < loaded:
        return Check(
            "ledger", table, "FAIL",
            f"{count} rows but the ledger says {loaded} were loaded: {loaded - count} missing "
            "(deleted outside histetl, or dropped by a retention policy)",
        )  # fmt: skip
    return Check(
        "ledger", table, "FAIL",
        f"{count} rows but the ledger accounts for at most {upper}: {count - upper} rows were "
        "written outside histetl",
    )  # fmt: skip


def gaps_check(ctx: Context, table: str, spec: TableSpec) -> Check:
    db, options = ctx.db, ctx.options
    interval = bar_interval(table)
    assert interval is not None
    datasets = ctx.ledger.get(table, LedgerTotals()).datasets
    calendar = calendar_for(options.calendar, datasets)
    if calendar is None:
        return Check(
            "gaps", table, "SKIP",
            f"no calendar for dataset(s) {', '.join(datasets) or 'unknown'}; pass --calendar",
        )  # fmt: skip
    if not _has(ctx, table, ["ts_event", "instrument_id", "publisher_id", "symbol"]):
        return Check("gaps", table, "SKIP", "no ts_event/instrument_id/symbol columns")
    ts = db.time_ns("ts_event")
    where = ctx.where(table, spec)
    holes = db.fetch(
        "SELECT instrument_id, symbol, prev_ns, ts_ns FROM ("
        f"SELECT instrument_id, symbol, {ts} AS ts_ns, lag({ts}) OVER (PARTITION BY "
        f"instrument_id, publisher_id, symbol ORDER BY {ts}) AS prev_ns FROM {quote(table)}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f") h WHERE ts_ns - prev_ns > {int(interval)}"
    )
    frame = pl.from_arrow(holes)
    assert isinstance(frame, pl.DataFrame)
    if frame.is_empty():
        return Check(
            "gaps", table, "PASS", f"no holes in any bar series (calendar {calendar.name})"
        )
    frame = frame.with_columns(pl.col("instrument_id").cast(pl.Int64))
    span = (int(frame["prev_ns"].min()), int(frame["ts_ns"].max()))  # type: ignore[arg-type]
    base = calendar.ranges(*span)
    windows = _listed(db, frame["instrument_id"].unique().to_list())
    status = _status(db, frame["instrument_id"].unique().to_list()) if options.use_status else {}
    missing = np.zeros(frame.height, dtype=np.int64)
    for (iid,), part in (
        frame.with_row_index("i").partition_by("instrument_id", as_dict=True).items()
    ):
        sessions = base
        if iid in status:
            sessions = status_ranges(*status[iid], calendar=base, end_ns=span[1])
        if iid in windows:
            lo, hi = windows[iid]
            sessions = _merge(np.clip(sessions, lo, hi))
        a = part["prev_ns"].to_numpy().astype(np.int64)
        b = part["ts_ns"].to_numpy().astype(np.int64)
        missing[part["i"].to_numpy()] = covered(
            buckets(sessions, interval), a // interval + 1, b // interval
        )
    frame = frame.with_columns(pl.Series("missing", missing)).filter(
        pl.col("missing") >= options.min_gap
    )
    if frame.is_empty():
        return Check(
            "gaps", table, "PASS", f"no bars missing inside sessions (calendar {calendar.name})"
        )
    series = frame.select("instrument_id", "symbol").unique().height
    longest = frame.sort(  # the longest holes, earliest first: the same list on every target
        ["missing", "ts_ns", "instrument_id"], descending=[True, False, False]
    )
    examples = [
        f"{r['symbol']} ({r['instrument_id']}): {r['missing']} missing between "
        f"{format_ns(r['prev_ns'])} and {format_ns(r['ts_ns'])}"
        for r in longest.head(options.examples).iter_rows(named=True)
    ]
    total = int(frame["missing"].sum())
    return Check(
        "gaps", table, "FAIL",
        f"{total} bar(s) missing inside sessions in {frame.height} hole(s) of {series} series "
        f"(calendar {calendar.name})",
        examples,
    )  # fmt: skip


def _definitions_loaded(db: Database) -> bool:
    return db.has_rows(DEFINITION_TABLE) and "instrument_id" in db.column_names(DEFINITION_TABLE)


def _listed(db: Database, ids: list[int]) -> dict[int, tuple[int, int]]:
    """instrument_id -> [activation, expiration] from the definitions (open ends unbounded)."""
    if not ids or not _definitions_loaded(db):
        return {}
    names = db.column_names(DEFINITION_TABLE)
    if not {"activation", "expiration"} <= set(names):
        return {}
    rows = db.rows(
        f"SELECT instrument_id, min({db.time_ns('activation')}), max({db.time_ns('expiration')}) "
        f"FROM {DEFINITION_TABLE} WHERE instrument_id IN ({', '.join(map(str, ids))}) "
        "GROUP BY instrument_id"
    )
    low, high = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    return {
        int(i): (int(a) if a is not None else low, int(e) if e is not None else high)
        for i, a, e in rows
    }


def _status(
    db: Database, ids: list[int]
) -> dict[int, tuple[npt.NDArray[np.int64], list[str | None], npt.NDArray[np.int64]]]:
    if not ids or "status" not in db.tables():
        return {}
    if not {"ts_event", "instrument_id", "is_trading", "action"} <= set(db.column_names("status")):
        return {}
    ts = db.time_ns("ts_event")
    table = db.fetch(
        f"SELECT instrument_id, {ts} AS ts, is_trading, action FROM status "
        f"WHERE instrument_id IN ({', '.join(map(str, ids))}) ORDER BY instrument_id, {ts}"
    )
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    out = {}
    for (iid,), part in frame.partition_by("instrument_id", as_dict=True).items():
        out[int(iid)] = (
            part["ts"].to_numpy().astype(np.int64),
            part["is_trading"].to_list(),
            part["action"].fill_null(0).to_numpy().astype(np.int64),
        )
    return out


def definitions_check(ctx: Context, tables: dict[str, TableSpec]) -> Check:
    db = ctx.db
    if not _definitions_loaded(db):
        return Check("definitions", "", "SKIP", "no definitions loaded")
    missing: dict[tuple[int, str], set[str]] = {}
    for table, spec in tables.items():
        if table == DEFINITION_TABLE or not _has(ctx, table, ["instrument_id", "symbol"]):
            continue
        where = [
            *ctx.where(table, spec),
            f"NOT EXISTS (SELECT 1 FROM {DEFINITION_TABLE} d "
            "WHERE d.instrument_id = t.instrument_id)",
        ]
        for iid, symbol in db.rows(
            f"SELECT DISTINCT instrument_id, symbol FROM {quote(table)} t "
            f"WHERE {' AND '.join(where)}"
        ):
            missing.setdefault((int(iid), str(symbol)), set()).add(table)
    if not missing:
        return Check("definitions", "", "PASS", "every instrument has a definition")
    examples = [
        f"{symbol} ({iid}) in {', '.join(sorted(found))}"
        for (iid, symbol), found in sorted(missing.items())[: ctx.options.examples]
    ]
    return Check(
        "definitions", "", "FAIL", f"{len(missing)} instrument(s) without a definition", examples
    )
