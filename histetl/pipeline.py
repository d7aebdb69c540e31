"""The pipeline: source files -> decode -> symbology -> validate -> map -> load.

The one module that wires the stages. Each stage passes tables (Arrow at the edges, Polars in
the middle) in bounded batches, so memory follows the batch size, not the file size.
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow as pa
from loguru import logger

from histetl.config import default_db
from histetl.decode import DEFAULT_BATCH_SIZE, DbnFile
from histetl.errors import ConfigError, HistetlError, TransientError
from histetl.mapping import Mapping, TableMapping, to_arrow
from histetl.prefetch import Prefetch
from histetl.quarantine import QuarantineWriter, quarantine_path
from histetl.report import FileReport, RunReport, new_run_id
from histetl.schemas import SYMBOL_COLUMN
from histetl.sinks import (
    FileLoad,
    LedgerEntry,
    MergeRequired,
    RetryPolicy,
    Sink,
    TableTarget,
    TimescaleOptions,
    canonical_targets,
    open_sink,
    redact,
)
from histetl.symbology import SymbolMap
from histetl.validate import RuleBook, RuleSet

FAULT_ENV = "HISTETL_TEST_FAULT"
DBN_SUFFIXES = (".dbn", ".dbn.zst")


@dataclass
class ReplayOptions:
    db: str = field(default_factory=default_db)
    batch_size: int = DEFAULT_BATCH_SIZE
    force: bool = False
    validate_only: bool = False
    on_invalid: Literal["quarantine", "fail"] = "quarantine"
    quarantine_dir: Path = Path("quarantine")
    rules_files: tuple[Path, ...] = ()
    mapping_file: Path | None = None
    db_retry: RetryPolicy = field(default_factory=RetryPolicy)
    workers: int = 1  # files loaded in parallel by this many processes (PostgreSQL targets)
    cluster: str | None = None  # run the files as tasks on Dask: tcp://HOST:PORT, local[:N]
    max_db_writers: int = 4  # with cluster: files loading into the database at once


def expand_paths(patterns: Iterable[str | Path]) -> list[Path]:
    """Files, directories (searched recursively for .dbn/.dbn.zst) and glob patterns."""
    found: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        path = Path(text)
        if path.is_dir():
            matches = [p for p in path.rglob("*") if p.is_file() and _is_dbn(p)]
        elif path.is_file():
            matches = [path]
        else:
            matches = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
        if not matches:
            raise ConfigError(
                f"no DBN files match {text!r}",
                where="PATH",
                hint="give files, directories or globs of .dbn / .dbn.zst files",
            )
        found.extend(sorted(matches))
    return list(dict.fromkeys(p.resolve() for p in found))


def _is_dbn(path: Path) -> bool:
    return path.name.endswith(DBN_SUFFIXES)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _ns_or_none(value: int | None) -> int | None:
    """A metadata timestamp, or None when absent or UNDEF_TIMESTAMP."""
    return None if value is None or value >= 2**63 else value


class Replayer:
    """Runs files through the pipeline into one sink (or none, with validate_only)."""

    def __init__(self, options: ReplayOptions, run_id: str | None = None) -> None:
        self.options = options
        self.run_id = run_id or new_run_id()
        # called per batch with the file's report so far and the fraction of it read
        self.on_progress: Callable[[FileReport, float], None] | None = None
        # Configuration errors surface here, before any file is touched.
        self.rules = RuleBook.load(options.rules_files)
        self.mapping = Mapping.load(options.mapping_file)
        if options.batch_size < 1:
            raise ConfigError("batch size must be at least 1", where="--batch-size")
        if options.workers < 1:
            raise ConfigError("workers must be at least 1", where="--workers")
        if options.cluster is not None:
            from histetl.cluster import check_cluster_options

            check_cluster_options(options)

    def run(
        self, paths: Sequence[Path], on_file: Callable[[FileReport], None] | None = None
    ) -> RunReport:
        options = self.options
        mode = "validate-only" if options.validate_only else "load"
        if options.cluster is not None:  # the same per-file task, on a Dask cluster
            from histetl.cluster import run_on_cluster

            report = RunReport(self.run_id, redact(options.db), mode)
            report.files = run_on_cluster(options, self.run_id, paths, on_file)
            report.finished_at = dt.datetime.now(dt.UTC).isoformat()
            return report
        if options.workers > 1:
            return self._run_parallel(paths, on_file, mode)
        sink = None if options.validate_only else open_sink(options.db, options.db_retry)
        report = RunReport(self.run_id, sink.display if sink else redact(options.db), mode)
        try:
            for path in paths:
                file_report = self.process(path, sink)
                report.files.append(file_report)
                if on_file is not None:
                    on_file(file_report)
        finally:
            if sink is not None:
                sink.close()
        report.finished_at = dt.datetime.now(dt.UTC).isoformat()
        return report

    def _run_parallel(
        self, paths: Sequence[Path], on_file: Callable[[FileReport], None] | None, mode: str
    ) -> RunReport:
        """Files spread over worker processes, each with its own database connection."""
        options = self.options
        if not options.validate_only and options.db.lower().startswith("duckdb"):
            raise ConfigError(
                "DuckDB allows one writing process per database file",
                where="--workers",
                hint="use --workers 1 with DuckDB, or a PostgreSQL/TimescaleDB target",
            )
        report = RunReport(self.run_id, redact(options.db), mode)
        done: dict[int, FileReport] = {}
        context = multiprocessing.get_context("spawn")  # no fork of threads or connections
        with ProcessPoolExecutor(options.workers, mp_context=context) as pool:
            futures = {
                pool.submit(_process_in_worker, options, self.run_id, path): i
                for i, path in enumerate(paths)
            }
            for future in as_completed(futures):
                done[futures[future]] = file_report = future.result()
                if on_file is not None:
                    on_file(file_report)
        report.files = [done[i] for i in range(len(paths))]
        report.finished_at = dt.datetime.now(dt.UTC).isoformat()
        return report

    def process(self, path: Path, sink: Sink | None) -> FileReport:
        """One file, in one transaction. An optimistic direct load that meets existing rows
        is replayed in merge mode; a dropped connection is retried with backoff."""
        started = time.perf_counter()
        merge = False
        attempt = 1
        while True:
            report = FileReport(path=str(path))
            try:
                with DbnFile(path) as dbn:
                    self._process(dbn, sink, report, merge)
            except MergeRequired:
                merge = True
                continue
            except TransientError as exc:
                if sink is None or attempt >= self.options.db_retry.max_attempts:
                    report = _failed(report, exc)
                else:
                    logger.warning("{} (attempt {}); retrying {}", exc.message, attempt, path)
                    time.sleep(min(0.5 * 2**attempt, self.options.db_retry.max_wait_s))
                    attempt += 1
                    _reconnect(sink)
                    continue
            except HistetlError as exc:
                report = _failed(report, exc)
            report.seconds = time.perf_counter() - started
            return report

    def _process(self, dbn: DbnFile, sink: Sink | None, report: FileReport, merge: bool) -> None:
        spec = dbn.spec
        table = self.mapping.for_spec(spec)
        report.dataset, report.schema, report.table = dbn.dataset, spec.schema, table.table
        start, end = _ns_or_none(dbn.metadata.start), _ns_or_none(dbn.metadata.end)
        load = None
        if sink is not None:
            report.sha256 = sha256_file(dbn.path)
            entry = None if self.options.force else sink.ledger_entry(report.sha256, table.table)
            target = TableTarget(table.table, table.arrow_schema, table.key, table.key[0])
            load = (
                None
                if entry
                else sink.begin(target, report.sha256, self.options.force, merge, (start, end))
            )
            if load is None:
                report.status = "skipped"
                entry = entry or sink.ledger_entry(report.sha256, table.table)
                report.skipped = entry.records if entry else 0
                return
        rules = self.rules.for_file(spec, dbn.dataset, start, end)
        writer = QuarantineWriter(
            quarantine_path(
                self.options.quarantine_dir, self.run_id, dbn.dataset, spec.schema, dbn.path
            ),
            dbn.path,
        )
        rejected = False
        try:
            self._batches(dbn, rules, table, writer, load, report)
            rejected = self.options.on_invalid == "fail" and report.quarantined > 0
            if rejected:
                raise HistetlError(
                    f"{report.quarantined} invalid records ({_rule_summary(report.rules)}); "
                    "on_invalid is fail, so nothing from this file was loaded",
                    where=str(dbn.path),
                    hint="inspect them with `histetl quarantine`, or "
                    "replay with --on-invalid quarantine to load the valid rows",
                )
            report.reconcile()
            if load is not None:
                assert report.sha256 is not None  # computed whenever there is a sink
                fault_point("before_commit")
                load.commit(
                    LedgerEntry(
                        report.sha256,
                        table.table,
                        str(dbn.path),
                        dbn.dataset,
                        spec.schema,
                        report.records,
                        report.loaded,
                        report.duplicates,
                        report.quarantined,
                        self.run_id,
                        dt.datetime.now(dt.UTC),
                    )
                )
        except BaseException:
            if load is not None:
                load.rollback()
            if rejected:  # keep the evidence of why the file was rejected
                report.quarantine_file = _str_or_none(writer.close())
            else:
                writer.discard()
            raise
        fault_point("after_commit")
        report.quarantine_file = _str_or_none(writer.close())
        report.status = "loaded" if load is not None else "validated"

    def _progress(self, report: FileReport, fraction: float) -> None:
        if self.on_progress is not None:
            self.on_progress(report, fraction)

    def _batches(
        self,
        dbn: DbnFile,
        rules: RuleSet,
        table: TableMapping,
        writer: QuarantineWriter,
        load: FileLoad | None,
        report: FileReport,
    ) -> None:
        symbols = SymbolMap.from_metadata(dbn.metadata, str(dbn.path))
        index_ts = dbn.spec.index_ts

        def decoded() -> Iterator[pa.RecordBatch]:
            # validate-only loads nothing, so it needs no record_hash key
            with_hash = not self.options.validate_only
            for batch in dbn.batches(self.options.batch_size, with_hash):
                symbol = symbols.resolve(batch.column("instrument_id"), batch.column(index_ts))
                yield batch.append_column(SYMBOL_COLUMN, symbol)

        # Decoding the next batch overlaps validating and loading this one: numpy, Polars,
        # Arrow and the database drivers release the GIL for their heavy parts.
        with Prefetch(decoded()) as batches:
            valid = self._validated(
                batches,
                rules,
                table,
                writer,
                report,
                load is not None,
                lambda: self._progress(report, dbn.progress(report.records)),
            )
            if load is None:
                for _ in valid:  # validate-only, or the file will be rejected
                    pass
                return
            sent = _Counter(valid)
            inserted = load.write_stream(iter(sent))
            report.loaded = inserted
            report.duplicates = sent.rows - inserted
            if self.options.on_invalid == "fail" and report.quarantined:
                report.valid += sent.rows  # rolled back below: the file is rejected

    def _validated(
        self,
        batches: Iterator[pa.RecordBatch],
        rules: RuleSet,
        table: TableMapping,
        writer: QuarantineWriter,
        report: FileReport,
        loading: bool,
        tick: Callable[[], None],
    ) -> Iterator[pa.Table]:
        """Valid rows in the target's schema; quarantines the rest and counts everything."""
        for batch in batches:
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            split = rules.split(frame, first_ordinal=report.records)
            report.records += batch.num_rows
            tick()
            report.add_rules(split.counts)
            report.quarantined += split.invalid.height
            writer.write(split.invalid)
            if not loading or (report.quarantined and self.options.on_invalid == "fail"):
                report.valid += split.valid.height  # not loaded: counted as valid only
                continue
            yield _to_target(table.apply(split.valid), table.arrow_schema)
            fault_point("after_batch", report.records)


class _Counter:
    """Counts the rows of a stream of tables as they pass."""

    def __init__(self, tables: Iterator[pa.Table]) -> None:
        self._tables = tables
        self.rows = 0

    def __iter__(self) -> Iterator[pa.Table]:
        for table in self._tables:
            self.rows += table.num_rows
            yield table


_WORKER: dict[str, tuple[Replayer, Sink | None]] = {}


def _process_in_worker(options: ReplayOptions, run_id: str, path: Path) -> FileReport:
    """One file in a worker process; the worker keeps its Replayer and connection."""
    if run_id not in _WORKER:
        sink = None if options.validate_only else open_sink(options.db, options.db_retry)
        _WORKER[run_id] = (Replayer(options, run_id), sink)
    replayer, sink = _WORKER[run_id]
    return replayer.process(path, sink)


def fault_point(name: str, records: int = 0) -> None:
    """Test-only crash injection. HISTETL_TEST_FAULT=<point>[:<records>] makes the process
    SIGKILL itself there (after_batch once `records` are loaded, before_commit,
    after_commit): the crash-safety tests use it to kill a load at exact points."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, _, at = spec.partition(":")
    if point == name and (not at or records >= int(at)):
        os.kill(os.getpid(), signal.SIGKILL)


def _failed(report: FileReport, exc: HistetlError) -> FileReport:
    """Rolled back: nothing from the file is loaded; the other counts say what was seen."""
    report.status = "failed"
    report.error = exc.message
    report.loaded = report.duplicates = 0
    return report


def _reconnect(sink: Sink) -> None:
    try:
        sink.reconnect()
    except TransientError as exc:
        logger.warning("{}", exc.message)


def _to_target(frame: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    return to_arrow(frame).cast(schema)


def _rule_summary(rules: dict[str, int]) -> str:
    return ", ".join(f"{name}: {n}" for name, n in sorted(rules.items(), key=lambda x: -x[1]))


def _str_or_none(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def init_db(uri: str, timescale: TimescaleOptions | None = None) -> str:
    """Create the ledger and every canonical table (idempotent), with TimescaleDB policies;
    returns the target shown."""
    sink = open_sink(uri, timescale=timescale)
    try:
        sink.init_tables(canonical_targets())
        return sink.display
    finally:
        sink.close()


def ledger(uri: str) -> list[LedgerEntry]:
    sink = open_sink(uri)
    try:
        return sink.ledger()
    finally:
        sink.close()


def replay(
    paths: Iterable[str | Path],
    options: ReplayOptions | None = None,
    on_file: Callable[[FileReport], None] | None = None,
) -> RunReport:
    """Replay DBN files into the target database; the library form of `histetl replay`."""
    options = options or ReplayOptions()
    replayer = Replayer(options)
    return replayer.run(expand_paths(paths), on_file)
