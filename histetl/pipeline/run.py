"""`histetl run`: plan each job's chunks, check the budget, fetch what is missing under the
job's lock, then load every complete chunk with the same replay as `histetl replay`.

The pieces live in `histetl.source.databento`: `plan` (chunks, cost, budget), `client` (the
API with retries), `download` (whole-or-nothing downloads with manifests) and `lock` (one run
per job). Chunks the ledger already has are reported as skipped from their manifests' sha256,
without reading them, and a run that finds nothing new loads no stage at all.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from histetl.config import DEFAULT_BATCH_SIZE
from histetl.dbn import table_name
from histetl.errors import SourceError
from histetl.interrupt import CANCEL, Interrupted
from histetl.jobs import JobFile, RawDir, plan_chunks
from histetl.options import ReplayOptions
from histetl.precheck import ledger_hits
from histetl.report import FileReport, RunReport, new_run_id
from histetl.source.databento.client import DatabentoApi, api_key
from histetl.source.databento.download import data_location, fetch_chunk
from histetl.source.databento.lock import JobLock
from histetl.source.databento.plan import ChunkPlan, JobPlan, check_budget, local_plans, price_plans
from histetl.targets import backend_of, display

if TYPE_CHECKING:
    from histetl.pipeline.replay import BatchObserver, Replayer


# -- a run: plan, guard, fetch, load ----------------------------------------------------------


@dataclass
class RunOptions:
    jobs: tuple[str, ...] = ()
    dry_run: bool = False
    force: bool = False  # fetch complete chunks again and reload them
    db: str | None = None  # overrides $HISTETL_DB and the job file's `db`
    lock_wait_s: float = 0.0
    batch_size: int = DEFAULT_BATCH_SIZE
    cluster: str | None = None  # overrides the job file's `cluster` (the CLI adds the env)
    max_db_writers: int = 4
    today: dt.date | None = None  # what relative dates resolve against (default: UTC today)
    sleep: Callable[[float], None] = time.sleep  # between retries
    observer: BatchObserver | None = None  # sees every batch (the --html quality report)


@dataclass
class RunResult:
    plans: list[JobPlan]
    report: RunReport | None = None  # None for a dry run
    error: SourceError | None = None  # a fetch failure; the complete chunks were still loaded

    @property
    def downloaded(self) -> list[ChunkPlan]:
        return [c for p in self.plans for c in p.chunks if c.status == "downloaded"]

    def to_dict(self) -> dict[str, Any]:
        chunks = [
            {
                "job": c.chunk.job,
                "file": str(c.chunk.relpath),
                **{k: c.chunk.request()[k] for k in ("dataset", "schema", "start", "end")},
                "status": c.status,
                "records": c.records,
                "cost_usd": c.cost_usd,
                "seconds": round(c.seconds, 3),
                "error": c.error,
            }
            for p in self.plans
            for c in p.chunks
        ]
        out: dict[str, Any] = self.report.to_dict() if self.report else {"mode": "dry-run"}
        out["chunks"] = chunks
        out["error"] = self.error.message if self.error else None
        return out


def run_jobs(
    job_file: JobFile,
    options: RunOptions | None = None,
    on_chunk: Callable[[ChunkPlan], None] | None = None,
    on_file: Callable[[FileReport], None] | None = None,
) -> RunResult:
    """`histetl run`: plan, check the budget, fetch the missing chunks, load the job's files."""
    options = options or RunOptions()
    jobs = job_file.select(options.jobs)
    # Everything that can be wrong with the configuration fails here, before any work.
    for job in jobs:
        plan_chunks(job, options.today)
    key = api_key(job_file.databento)
    db = _check_db(job_file.target_db(options.db))
    replay_options = ReplayOptions(
        db=db,
        batch_size=options.batch_size,
        force=options.force,
        on_invalid=job_file.on_invalid,
        quarantine_dir=job_file.quarantine_dir,
        rules_files=job_file.rules,
        mapping_file=job_file.mapping,
        cluster=options.cluster or job_file.cluster,
        max_db_writers=options.max_db_writers,
    )
    loader = _Loader(replay_options, options.observer)
    api = DatabentoApi(key, job_file.databento, sleep=options.sleep)
    raw_dir = job_file.raw_dir
    if options.dry_run:
        plans = local_plans(jobs, raw_dir, options.force, options.today)
        price_plans(plans, api)
        return RunResult(plans)
    with JobLock(raw_dir, [j.name for j in jobs], options.lock_wait_s):
        plans = local_plans(jobs, raw_dir, options.force, options.today)
        price_plans(plans, api)
        check_budget(plans)
        error = _fetch_all(plans, api, raw_dir, on_chunk)
        report = _load(plans, raw_dir, loader, on_file)
    return RunResult(plans, report, error)


def _fetch_all(
    plans: list[JobPlan],
    api: DatabentoApi,
    raw_dir: RawDir,
    on_chunk: Callable[[ChunkPlan], None] | None,
) -> SourceError | None:
    """Fetch pending chunks in order; stop at the first failure and return it. A signal
    stops the download in progress at once (its partial file is removed) and raises
    Interrupted."""
    fetched, total = 0, sum(len(plan.pending) for plan in plans)
    for plan in plans:
        for item in plan.pending:
            try:
                with CANCEL.raising():
                    fetch_chunk(api, raw_dir, item)
            except Interrupted as exc:
                raise Interrupted(
                    exc.signum,
                    f"{fetched} of {total} chunks downloaded (no partial download is kept), "
                    "nothing loaded yet",
                ) from None
            except SourceError as exc:
                item.status, item.error = "failed", exc.message
                if on_chunk is not None:
                    on_chunk(item)
                return exc
            fetched += 1
            if on_chunk is not None:
                on_chunk(item)
    return None


class _Loader:
    """The replay side of a run. Rules and mapping files are compiled at once (a bad one fails
    before any download); the pipeline itself is built only when a chunk needs loading, so a
    run that finds nothing new loads no stage."""

    def __init__(self, options: ReplayOptions, observer: BatchObserver | None) -> None:
        self.options = options
        self.observer = observer
        self.run_id = new_run_id()
        self._replayer: Replayer | None = None
        if options.rules_files or options.mapping_file is not None or observer is not None:
            self.replayer()
        else:  # what Replayer checks, without building one
            options.check()

    def replayer(self) -> Replayer:
        if self._replayer is None:
            from histetl.pipeline.replay import Replayer

            self._replayer = Replayer(self.options, self.run_id)
            self._replayer.observer = self.observer
        return self._replayer

    def table_for(self, schema: str) -> str:
        """The table a schema's files load into (the mapping's `table:`, else canonical)."""
        if self._replayer is None:
            return table_name(schema)
        from histetl.schemas import table_spec

        return self._replayer.mapping.for_spec(table_spec(schema)).table


def _load(
    plans: list[JobPlan],
    raw_dir: RawDir,
    loader: _Loader,
    on_file: Callable[[FileReport], None] | None,
) -> RunReport:
    """Load every complete chunk of the jobs through the replay pipeline. A chunk the ledger
    has for its target table (the rule replay uses: sha256 + the table its schema maps to) is
    reported as skipped without reading it again (unless force)."""
    ready = [
        c
        for p in plans
        for c in p.chunks
        if c.status in ("complete", "downloaded") and c.manifest is not None
    ]
    # Chunks downloaded just now go straight to the pipeline (which checks the ledger itself);
    # the others are looked up by their manifest's sha256. When the lookup cannot be made
    # cheaply, they go to the pipeline too, which checks each one.
    options = loader.options
    known = {c.manifest.sha256 for c in ready if c.status == "complete" and c.manifest}
    hits = (
        ledger_hits(options.db, known, options.db_retry, loader.table_for)
        if known and not options.force
        else None
    ) or {}
    todo: list[Path | str] = []
    skipped = []
    for item in ready:
        assert item.manifest is not None
        entry = hits.get(item.manifest.sha256) if item.status == "complete" else None
        path = data_location(raw_dir, item.chunk)  # an s3:// raw_dir is read back from S3
        if entry is None:
            todo.append(path)
            continue
        skipped.append(
            FileReport(
                path=str(path),
                dataset=item.chunk.dataset,
                schema=item.chunk.schema,
                table=entry.table,
                skipped=entry.records,
                status="skipped",
                sha256=item.manifest.sha256,
            )
        )
    for file_report in skipped:
        if on_file is not None:
            on_file(file_report)
    if todo:
        report = loader.replayer().run(todo, on_file=on_file)
    else:
        report = RunReport(loader.run_id, display(options.db), "load")
        report.finished_at = report.started_at
    report.files[:0] = skipped
    return report


def _check_db(db: str) -> str:
    backend_of(db)  # ConfigError for an unknown scheme; it never shows the password
    return db
