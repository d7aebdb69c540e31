"""The report document: a run's counts plus the figures, per file and per table.

`document` assembles what the page shows and the JSON sidecar holds (the same dict);
`from_run` serves `replay`/`run`/`demo --html` (figures collected while the batches streamed);
`from_report_file` serves `histetl report` (counts from a run report's JSON; figures from one
query per table of the target, plus the run's quarantine files, when a database is given).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl

from histetl.errors import ConfigError, HistetlError
from histetl.outputs import sidecar_path, write_bytes
from histetl.quality.figures import DAY_NS, FigureOptions, TableFigures
from histetl.quality.observer import FileFigures, ReportObserver
from histetl.report import COUNTS, RunReport
from histetl.schemas import table_spec
from histetl.validate import RuleBook

FORMAT = "histetl-quality/1"


def observe(replayer: Any) -> ReportObserver:
    """Attach a figures observer to a `histetl.pipeline.replay.Replayer` (in-process runs only)."""
    if replayer.options.workers > 1 or replayer.options.cluster is not None:
        raise ConfigError(
            "the HTML report needs the batches in this process",
            where="--html",
            hint="use --workers 1 and no --cluster with --html, or build the page afterwards with "
            "`histetl report REPORT.json --html FILE --db URI`",
        )
    observer = ReportObserver(replayer.rules)
    replayer.observer = observer
    return observer


def write_run_page(
    html: Path, report: RunReport, observer: ReportObserver, db: str | None = None
) -> tuple[Path, Path]:
    """Write the page and sidecar of a finished run; returns both paths."""
    return write(html, from_run(report, observer, db))


def from_run(report: RunReport, observer: ReportObserver, db: str | None = None) -> dict[str, Any]:
    """The document of a run whose batches `observer` saw; `db` (a load's target) is asked for
    the symbols of the day before each table's first day."""
    return document(report.to_dict(), observer.files, _previous_day_source(db))


def from_report_file(
    path: Path, db: str | None = None, options: FigureOptions | None = None
) -> dict[str, Any]:
    """`histetl report`: the document of a saved run report, with figures from `db`."""
    try:
        run = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"cannot read run report: {exc}",
            where=str(path),
            hint="give the JSON written by `histetl replay/run --report FILE`",
        ) from None
    if not isinstance(run, dict) or not isinstance(run.get("files"), list):
        raise ConfigError(
            "not a histetl run report (no `files` list)",
            where=str(path),
            hint="give the JSON written by `histetl replay/run --report FILE`",
        )
    files = [f for f in run["files"] if isinstance(f, dict) and "path" in f]
    figures: list[FileFigures] = []
    if db is not None:
        figures = _figures_from_db(db, files, options or FigureOptions())
    return document(run, figures, _previous_day_source(db), from_db=db is not None)


def _figures_from_db(
    uri: str, files: list[dict[str, Any]], options: FigureOptions
) -> list[FileFigures]:
    """One query per table, restricted to the time span of the run's files (their DBN
    headers' start and end) when every file still gives one, else all its rows; streamed in
    batches through the same accumulators, as are the run's quarantine files."""
    from histetl.read.database import Database
    from histetl.report import FileReport

    out: list[FileFigures] = []
    book = builtin_rules()
    with Database.open(uri) as db:
        tables: dict[str, list[dict[str, Any]]] = {}
        for f in files:
            if f.get("table") and f.get("status") != "failed":
                tables.setdefault(f["table"], []).append(f)
        for table, members in tables.items():
            if table not in db.tables():
                continue
            spec = table_spec(members[0].get("schema") or table.replace("_", "-"))
            dataset = str(members[0].get("dataset") or "")
            figures = TableFigures(spec, dataset, options)
            spans = file_spans(members)
            where = []
            if spans:
                where.append(" OR ".join(
                    "(" + " AND ".join(db.time_range(spec.index_ts, lo, hi)) + ")"
                    for lo, hi in spans
                ))  # fmt: skip
            empty = pl.DataFrame()
            order = db.time_order(spec.index_ts)
            for batch in db.read(table, where=where, order_by=order):
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                figures.add(frame, empty)
            for f in members:
                for quarantined in _quarantine_batches(f.get("quarantine_file")):
                    figures.add(empty, quarantined)
            rules = book.for_file(spec, dataset, None, None).rules
            summary = FileReport(path=f"table {table}", dataset=dataset, schema=spec.schema)
            summary.table, summary.status = table, "loaded"
            applied = [(r.name, r.severity) for r in rules]
            out.append(FileFigures(summary, figures, applied, spans))
    return out


def file_spans(files: list[dict[str, Any]]) -> list[tuple[int, int]] | None:
    """The [start, end) ns each file's DBN header gives, overlapping ones joined; None when a
    file is gone or its header gives no end (then the whole table is read)."""
    from histetl.decode import DbnFile

    spans = []
    for f in files:
        try:
            with DbnFile(f["path"]) as dbn:
                start, end = dbn.metadata.start, dbn.metadata.end
        except HistetlError:
            return None
        if not isinstance(start, int) or not isinstance(end, int) or end <= start:
            return None
        if end >= 2**63 - 1:  # UNDEF_TIMESTAMP: no end recorded
            return None
        spans.append((start, end))
    joined: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if joined and lo <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], hi))
        else:
            joined.append((lo, hi))
    return joined or None


def _quarantine_batches(path: str | None, rows: int = 65_536) -> Iterable[pl.DataFrame]:
    """A quarantine file in batches of `rows` (nothing when it is gone)."""
    import pyarrow.parquet as pq

    if not path or not Path(path).is_file():
        return
    try:
        parquet = pq.ParquetFile(path)
    except OSError:
        return
    for batch in parquet.iter_batches(batch_size=rows):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        yield frame


def _previous_day_source(db: str | None) -> Any:
    if db is None:
        return None

    def previous(table: str, ts: str, first_day: int) -> list[str] | None:
        from histetl.read.database import Database
        from histetl.sqltext import quote

        try:
            with Database.open(db) as conn:
                if table not in conn.tables():
                    return None
                where = conn.time_range(ts, (first_day - 1) * DAY_NS, first_day * DAY_NS)
                rows = conn.rows(
                    f"SELECT DISTINCT symbol FROM {quote(table)} WHERE " + " AND ".join(where)
                )
        except HistetlError:
            return None
        return sorted(str(r[0]) for r in rows if r[0] is not None)

    return previous


def document(
    run: dict[str, Any],
    figures: Iterable[FileFigures],
    previous_day: Any = None,
    from_db: bool = False,
    rules: RuleBook | None = None,
) -> dict[str, Any]:
    files = [f for f in run.get("files", []) if isinstance(f, dict)]
    totals = {k: sum(int(f.get(k) or 0) for f in files) for k in COUNTS}
    totals["valid"] = sum(int(f.get("valid") or 0) for f in files)
    by_path = {f.report.path: f for f in figures}
    tables: dict[str, dict[str, Any]] = {}
    merged: dict[str, TableFigures] = {}
    spans: dict[str, list[tuple[int, int]] | None] = {}
    for f in files:
        table = f.get("table") or "(unknown)"
        entry = tables.setdefault(
            table, {"table": table, "schema": f.get("schema"), "dataset": f.get("dataset"),
                    "files": [], "rules": {}}
        )  # fmt: skip
        seen = by_path.get(f["path"])
        entry["files"].append(_file_entry(f, seen, rules))
        for rule in entry["files"][-1]["rules"]:
            known = entry["rules"].setdefault(
                rule["name"], {"name": rule["name"], "severity": rule["severity"], "count": 0}
            )
            known["count"] += rule["count"]
        if seen is not None and seen.figures is not None:
            if table in merged:
                merged[table].merge(seen.figures)
            else:
                merged[table] = seen.figures
    for read in by_path.values():  # figures read from the database, one per table
        if read.report.path.startswith("table ") and read.figures is not None:
            merged[read.report.table] = read.figures
            spans[read.report.table] = read.spans
    for table, entry in tables.items():
        records = sum(int(x.get("records") or 0) for x in entry["files"])
        entry["records"] = records
        for rule in entry["rules"].values():
            rule["pct"] = 100.0 * rule["count"] / records if records else 0.0
        entry["rules"] = sorted(entry["rules"].values(), key=lambda r: (-r["count"], r["name"]))
        figs = merged.get(table)
        entry["figures"] = figs.to_dict() if figs is not None else None
        entry["figures_source"] = (
            ("database" if from_db else "stream") if figs is not None else None
        )
        if from_db and figs is not None:  # [[start, end), ...] ns read, None: the whole table
            read_spans = spans.get(table)
            entry["figures_spans"] = [list(x) for x in read_spans] if read_spans else None
        if figs is not None and previous_day is not None:
            days = entry["figures"]["symbology"]["per_day"]
            if days:
                first = (dt.date.fromisoformat(days[0]["day"]) - dt.date(1970, 1, 1)).days
                before = previous_day(table, figs.ts, first)
                if before:  # the target holds the day before
                    now = set(days[0]["symbols"])
                    days[0]["new"] = sorted(now - set(before))
                    days[0]["missing"] = sorted(set(before) - now)
                    days[0]["compared_with_target"] = True
    status, reasons = _status(files, tables)
    return {
        "format": FORMAT,
        "run": {
            "run_id": run.get("run_id"),
            "db": run.get("db"),
            "mode": run.get("mode"),
            "started_at": run.get("started_at"),
            "finished_at": run.get("finished_at"),
            "totals": totals,
            "status": status,
            "reasons": reasons,
        },
        "tables": list(tables.values()),
    }


def _file_entry(
    f: dict[str, Any], seen: FileFigures | None, book: RuleBook | None
) -> dict[str, Any]:
    counts = dict(f.get("rules") or {})
    records = int(f.get("records") or 0)
    applied = seen.rules if seen and seen.rules else _built_in_rules(f, book)
    rules: list[dict[str, Any]] = [
        {"name": name, "severity": severity, "count": int(counts.pop(name, 0))}
        for name, severity in applied
    ]
    rules += [{"name": n, "severity": "?", "count": int(c)} for n, c in sorted(counts.items())]
    for rule in rules:
        rule["pct"] = 100.0 * rule["count"] / records if records else 0.0
    keep = ("path", "dataset", "schema", "table", "status", "error", "quarantine_file", "seconds")
    out: dict[str, Any] = {k: f.get(k) for k in keep}
    out.update({k: int(f.get(k) or 0) for k in (*COUNTS, "valid")})
    out["reconciled"] = out["records"] == (
        out["loaded"] + out["duplicates"] + out["quarantined"] + out["valid"]
    )
    out["rules"] = rules
    return out


@cache
def builtin_rules() -> RuleBook:
    """The built-in rule book, read once (only when a file's rules are not known otherwise)."""
    return RuleBook.load()


def _built_in_rules(f: dict[str, Any], book: RuleBook | None) -> list[tuple[str, str]]:
    """The rules (name, severity) a file's schema and dataset get (built-in rules only: a run
    report does not say which --rules files were used)."""
    try:
        spec = table_spec(str(f.get("schema") or ""))
    except KeyError:
        return []
    return [
        (r.name, r.severity)
        for r in (book or builtin_rules()).for_file(spec, str(f.get("dataset")), None, None).rules
    ]


def _status(
    files: list[dict[str, Any]], tables: dict[str, dict[str, Any]]
) -> tuple[str, list[str]]:
    """FAIL when a file failed or does not reconcile; WARN when anything was quarantined or a
    warn rule, a crossed/locked book, a price jump or a sequence regression was seen."""
    fails, warns = [], []
    failed = [f for f in files if f.get("status") == "failed"]
    if failed:
        fails.append(f"{len(failed)} file(s) failed")
    for table, entry in tables.items():
        if not all(x["reconciled"] for x in entry["files"]):
            fails.append(f"{table}: records do not reconcile")
        quarantined = sum(x["quarantined"] for x in entry["files"])
        if quarantined:
            warns.append(f"{table}: {quarantined:,} rows quarantined")
        warned = sum(r["count"] for r in entry["rules"] if r["severity"] == "warn")
        if warned:
            warns.append(f"{table}: {warned:,} warn-rule hits")
        figs = entry["figures"]
        if not figs:
            continue
        if figs["books"]:
            bad = sum(h["crossed"] + h["locked"] for h in figs["books"])
            if bad:
                warns.append(f"{table}: {bad:,} crossed or locked quotes")
        if figs["prices"] and figs["prices"]["count"]:
            warns.append(f"{table}: {figs['prices']['count']:,} price jumps")
        if figs["sequence"] and figs["sequence"]["regressions"]:
            warns.append(f"{table}: {figs['sequence']['regressions']:,} sequence regressions")
    if fails:
        return "FAIL", fails + warns
    return ("WARN", warns) if warns else ("PASS", [])


def write(html: Path, doc: dict[str, Any]) -> tuple[Path, Path]:
    """Write the sidecar, then the page (each appears only when complete: OutputError if
    not), so a page on disk always has its figures beside it."""
    from histetl.quality.page import render

    text = render(doc)
    side = sidecar_path(html)
    write_bytes(side, (json.dumps(doc, default=str) + "\n").encode(), "--html")
    write_bytes(html, text.encode(), "--html")
    return html, side
