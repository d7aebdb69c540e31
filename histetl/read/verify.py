"""`histetl verify`: integrity checks on a loaded database, for monitoring (exit 1 on failure).

Checks, per loaded table (canonical, derived bars, and every table the ledger names):

- `duplicates`: rows sharing a key (index timestamp, instrument_id, record_hash), which the
  loader never writes (PostgreSQL's primary key enforces it too; DuckDB tables keep it by the
  load's anti-join merge; a table restored or written by something else may not), and, for
  bars, two bars of one instrument and publisher at one timestamp (a revised file loaded next to
  the old one).
- `rules`: rows breaking the active validation rules (built-in plus `--rules` files), with the
  rule names; `error` rules fail, `warn` rules only warn. The per-file rule
  `index_ts_in_file_range` does not apply: a table does not record which file a row came from.
- `ledger`: rows in each table against the load ledger. A table must hold exactly the rows the
  ledger says were loaded, or, after files were reloaded with --force (whose ledger row then
  counts its rows as duplicates), between that and loaded + duplicates. Skipped with
  --start/--end (the ledger has no time ranges).
- `gaps`: bars missing inside trading sessions, for bar series of 1 minute up to 1 day
  (`ohlcv_1m`, `ohlcv_1h`, derived `ohlcv_5m`...). A series is one instrument_id, publisher
  and symbol; every hole between two consecutive bars is measured against the sessions: the
  instrument's `status` messages (is_trading, else the action) from its first message on, the
  calendar before that, and only while its `definition` says it is listed (activation to
  expiration). Missing bars before a series' first or after its last bar are not seen.
- `definitions`: instruments in the data tables with no row in `definition` (skipped when no
  definitions are loaded).

Sessions come from `histetl.read.calendars` (`--calendar`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from histetl.errors import ConfigError
from histetl.outputs import write_json
from histetl.read.calendars import Calendar
from histetl.read.checks import (
    Check,
    Context,
    LedgerTotals,
    bar_interval,
    definitions_check,
    duplicates_check,
    gaps_check,
    ledger_check,
    rules_check,
)
from histetl.read.database import Database, spec_for
from histetl.schemas import TableSpec
from histetl.targets import LEDGER_TABLE
from histetl.times import parse_time
from histetl.validate import RuleBook

CHECKS: tuple[str, ...] = ("duplicates", "rules", "ledger", "gaps", "definitions")


# -- report --------------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    db: str
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "FAIL"]

    def text(self) -> str:
        lines = []
        width = max([len(c.table) for c in self.checks] + [5])
        for c in self.checks:
            lines.append(f"{c.status:<4}  {c.name:<11}  {c.table or '-':<{width}}  {c.detail}")
            lines += [f"      {e}" for e in c.examples]
        failed = len(self.failed)
        lines.append(
            f"verify {self.db}: {failed} of {len(self.checks)} checks failed"
            if failed
            else f"verify {self.db}: all {len(self.checks)} checks passed or were skipped"
        )
        return "\n".join(lines)

    def write_json(self, path: Path) -> None:
        data = {
            "db": self.db,
            "failed": len(self.failed),
            "checks": [asdict(c) for c in self.checks],
        }
        write_json(path, data)


@dataclass(frozen=True)
class VerifyOptions:
    db: str
    tables: tuple[str, ...] = ()  # schema or table names; default every loaded table
    checks: tuple[str, ...] = CHECKS
    start: str | None = None
    end: str | None = None
    rules_files: tuple[Path, ...] = ()
    calendar: str = "auto"
    min_gap: int = 1  # ignore holes with fewer missing bars
    use_status: bool = True  # sessions from loaded status messages (else the calendar only)
    examples: int = 5


def verify(options: VerifyOptions, on_check: Callable[[Check], None] | None = None) -> VerifyReport:
    """Run the checks; the library form of `histetl verify`."""
    unknown = [c for c in options.checks if c not in CHECKS]
    if unknown:
        raise ConfigError(
            f"unknown check {', '.join(unknown)}", where="--check", hint=", ".join(CHECKS)
        )
    if options.min_gap < 1:
        raise ConfigError("--min-gap must be at least 1", where="--min-gap")
    start = parse_time(options.start, "--start") if options.start else None
    end = parse_time(options.end, "--end") if options.end else None
    rules = RuleBook.load(options.rules_files) if "rules" in options.checks else None
    if options.calendar != "auto" and "gaps" in options.checks:
        Calendar.load(options.calendar)  # a bad calendar fails before any work
    with Database.open(options.db) as db:
        report = VerifyReport(db.display)
        ctx = Context(db, options, start, end, _ledger(db))
        tables = _tables(ctx)

        def add(check: Check) -> None:
            report.checks.append(check)
            if on_check is not None:
                on_check(check)

        for table, spec in tables.items():
            if "duplicates" in options.checks:
                add(duplicates_check(ctx, table, spec))
            if "rules" in options.checks and rules is not None:
                add(rules_check(ctx, table, spec, rules))
            if "ledger" in options.checks:
                add(ledger_check(ctx, table))
            if "gaps" in options.checks and bar_interval(table) is not None:
                add(gaps_check(ctx, table, spec))
        if "ledger" in options.checks and not options.tables:
            for table in sorted(set(ctx.ledger) - set(db.tables())):
                add(
                    Check(
                        "ledger",
                        table,
                        "FAIL",
                        "the ledger lists loads into a table that does not exist",
                    )
                )
        if "definitions" in options.checks:
            add(definitions_check(ctx, tables))
    return report


def _ledger(db: Database) -> dict[str, LedgerTotals]:
    if LEDGER_TABLE not in db.tables():
        return {}
    rows = db.rows(
        "SELECT target_table, CAST(sum(loaded) AS BIGINT), "
        "CAST(sum(loaded + duplicates) AS BIGINT), "
        "string_agg(DISTINCT dataset, ','), string_agg(DISTINCT schema, ',') "
        f"FROM {LEDGER_TABLE} GROUP BY target_table"
    )
    return {str(t): LedgerTotals(int(a), int(b), _sorted(d), _sorted(s)) for t, a, b, d, s in rows}


def _sorted(joined: object) -> tuple[str, ...]:
    return tuple(sorted(str(joined).split(","))) if joined else ()


def _tables(ctx: Context) -> dict[str, TableSpec]:
    db = ctx.db
    found: dict[str, TableSpec] = {}
    for table in sorted(db.tables()):
        if table.startswith("histetl_"):
            continue
        spec = spec_for(table)
        if spec is None and table in ctx.ledger:
            spec = next((s for s in map(spec_for, ctx.ledger[table].schemas) if s), None)
        if spec is not None and (table in ctx.ledger or db.has_rows(table)):
            found[table] = spec
    if not ctx.options.tables:
        return found
    chosen: dict[str, TableSpec] = {}
    for name in ctx.options.tables:
        table = name.replace("-", "_")
        if table not in found:
            close = difflib.get_close_matches(table, list(found), n=3)
            raise ConfigError(
                f"no loaded table {name!r}"
                + (f" (close matches: {', '.join(close)})" if close else ""),
                where="--table",
                hint=f"loaded: {', '.join(found) or 'nothing'}",
            )
        chosen[table] = found[table]
    return chosen
