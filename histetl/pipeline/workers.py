"""The `--workers N` executor: the per-file task in a pool of N local processes.

Workers are spawned (no fork of threads or connections) and start with
`histetl.interrupt.init_worker`: they stop with the parent on SIGINT/SIGTERM, when it sets the
shared stop event, and when it dies. After a stop request the files in progress roll back, no
other starts, and `Interrupted` says what was done.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from histetl.errors import ConfigError, LoadError
from histetl.interrupt import CANCEL, GRACE_S, Interrupted, init_worker
from histetl.options import ReplayOptions
from histetl.report import FileReport, RunReport, progress_summary
from histetl.source.files import Source
from histetl.targets import redact, single_writer

# the per-file task: one file in a worker process; None when a stop was requested
Task = Callable[[ReplayOptions, str, Source], FileReport | None]


def run_in_pool(
    task: Task,
    options: ReplayOptions,
    run_id: str,
    paths: Sequence[Source],
    on_file: Callable[[FileReport], None] | None = None,
) -> RunReport:
    """Files spread over `options.workers` worker processes, each with its own database
    connection: `task(options, run_id, path)` per file, the reports in input order."""
    if not options.validate_only and single_writer(options.db):
        raise ConfigError(
            "DuckDB allows one writing process per database file",
            where="--workers",
            hint="use --workers 1 with DuckDB, or a PostgreSQL/TimescaleDB target",
        )
    mode = "validate-only" if options.validate_only else "load"
    report = RunReport(run_id, redact(options.db), mode)
    done: dict[int, FileReport] = {}
    context = multiprocessing.get_context("spawn")  # no fork of threads or connections
    stop = context.Event()  # tells the workers to stop; they also stop if this one dies
    CANCEL.check()
    with ProcessPoolExecutor(
        options.workers,
        mp_context=context,
        initializer=init_worker,
        initargs=(os.getpid(), stop),
    ) as pool:
        futures = {pool.submit(task, options, run_id, path): i for i, path in enumerate(paths)}

        def collect(finished: set[Future[FileReport | None]]) -> None:
            for future in finished:
                if future.cancelled():
                    continue
                try:
                    file_report = future.result()
                except BrokenProcessPool as exc:
                    raise LoadError(
                        "a worker process died (killed, or out of memory?)",
                        where="--workers",
                        hint="rerun: files loaded are skipped, the others load again",
                    ) from exc
                if file_report is None:  # the worker was stopped by a signal
                    if not CANCEL.requested:
                        CANCEL.signum = signal.SIGTERM
                    continue
                done[futures[future]] = file_report
                if on_file is not None:
                    on_file(file_report)

        pending: set[Future[FileReport | None]] = set(futures)
        while pending and not CANCEL.requested:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            collect(finished)
        if CANCEL.signum is not None:
            stop.set()
            for future in pending:
                future.cancel()
            finished, _ = wait(pending, timeout=GRACE_S)  # files in progress roll back
            collect(finished)
            # wait=True: the pool's manager thread must end before the interpreter's exit
            # hook wakes it, or that hook writes to a pipe the thread just closed (a
            # traceback at exit). Idle workers end at once; a stuck one within GRACE_S.
            pool.shutdown(wait=True, cancel_futures=True)
            report.files = [done[i] for i in sorted(done)]
            raise Interrupted(CANCEL.signum, progress_summary(report, len(paths)))
    report.files = [done[i] for i in range(len(paths))]
    report.finished_at = dt.datetime.now(dt.UTC).isoformat()
    return report
