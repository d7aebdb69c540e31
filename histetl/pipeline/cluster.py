"""The Dask executor: replay's per-file tasks on a cluster, beside the local process pool.

The driver (this process) plans the files, checks that every worker can read them, submits
one task per file and gathers the `FileReport`s into the same run report as a local run. The
task is the function the `--workers` pool runs (`pipeline.replay.process_in_worker`): each worker
process keeps its Replayer and its database connection, and a file is one transaction with
its ledger row, so a task rerun after a worker died equals one clean load.

`--cluster` takes `tcp://HOST:PORT` (a running `dask scheduler`) or `local` / `local:N` (a
LocalCluster of N single-threaded worker processes that lives as long as this process).
Dask is an optional extra, imported only here and only when --cluster is given.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from histetl.errors import ConfigError, HistetlError, LoadError
from histetl.interrupt import CANCEL
from histetl.report import FileReport
from histetl.targets import single_writer

if TYPE_CHECKING:
    from histetl.options import ReplayOptions
    from histetl.pipeline.workers import Task

INSTALL_HINT = "--cluster needs the cluster extra: pip install 'histetl[cluster]'"
CONNECT_TIMEOUT_S = 10.0  # to reach the scheduler
WORKERS_TIMEOUT_S = 30.0  # for the first worker to join (a LocalCluster's to start), and the
# longest a run waits with no worker left before it fails (its tasks would wait forever)
TASK_RETRIES = 2  # reruns of a task that raised; a dead worker's task is rescheduled anyway

_TCP = re.compile(r"^tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")
_LOCAL = re.compile(r"^local(?::(?P<n>\d+))?$")
_FORMS = "tcp://HOST:PORT (a running `dask scheduler`), local, or local:N (N worker processes)"


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed --cluster value: a scheduler address, or a LocalCluster of `local_workers`."""

    uri: str
    address: str | None = None
    local_workers: int | None = None


def parse_cluster_uri(uri: str) -> ClusterSpec:
    """tcp://HOST:PORT, local or local:N; anything else is a usage error (exit 2)."""
    text = uri.strip()
    if match := _TCP.match(text):
        if not 0 < int(match["port"]) < 65536:
            raise ConfigError(f"port out of range in {text!r}", where="--cluster", hint=_FORMS)
        return ClusterSpec(text, address=text)
    if match := _LOCAL.match(text):
        count = int(match["n"]) if match["n"] else max(1, min(os.cpu_count() or 1, 4))
        if count < 1:
            raise ConfigError("local:N needs at least 1 worker", where="--cluster", hint=_FORMS)
        return ClusterSpec(text, local_workers=count)
    raise ConfigError(f"{text!r} is not a cluster address", where="--cluster", hint=_FORMS)


def check_cluster_options(options: ReplayOptions) -> ClusterSpec:
    """Everything about --cluster that can be wrong, before any connection or work."""
    assert options.cluster is not None
    spec = parse_cluster_uri(options.cluster)
    if options.workers > 1:
        raise ConfigError(
            "--workers and --cluster exclude each other",
            where="--cluster",
            hint="the cluster's workers are the parallelism: drop --workers",
        )
    if options.max_db_writers < 1:
        raise ConfigError("must be at least 1", where="--max-db-writers")
    if not options.validate_only and single_writer(options.db):
        raise ConfigError(
            "DuckDB allows one writing process per database file, so it cannot be loaded "
            "from a cluster",
            where="--cluster",
            hint="load into PostgreSQL/TimescaleDB, drop --cluster, or use --validate-only",
        )
    _distributed()  # the extra is installed
    return spec


def run_on_cluster(
    task: Task,
    options: ReplayOptions,
    run_id: str,
    paths: Sequence[Path | str],
    on_file: Callable[[FileReport], None] | None = None,
) -> list[FileReport]:
    """Each file as one task on the cluster; the reports in input order."""
    spec = check_cluster_options(options)
    if not paths:
        return []
    distributed = _distributed()
    # workers resolve relative paths against their own directories: give them this one's
    options = replace(
        options,
        quarantine_dir=options.quarantine_dir.resolve(),
        rules_files=tuple(p.resolve() for p in options.rules_files),
        mapping_file=options.mapping_file.resolve() if options.mapping_file else None,
    )
    configs = [*options.rules_files, *([options.mapping_file] if options.mapping_file else [])]
    with _client(spec) as client:
        local = [p for p in paths if isinstance(p, Path)]  # s3:// URLs: read by each worker
        _check_visible(client, [*local, *configs], options.quarantine_dir)
        writers = None
        if not options.validate_only:
            writers = distributed.Semaphore(
                max_leases=options.max_db_writers,
                name=f"histetl-db-writers-{run_id}",
                scheduler_rpc=client.scheduler,
                loop=client.loop,
            )
        futures = [
            client.submit(
                _task,
                task,
                options,
                run_id,
                path,
                writers,
                key=f"histetl-{run_id}-{i}",
                retries=TASK_RETRIES,
                pure=False,
            )
            for i, path in enumerate(paths)
        ]
        index = {future.key: i for i, future in enumerate(futures)}
        done: dict[int, FileReport] = {}
        future = None
        try:
            finished = distributed.as_completed(futures, loop=client.loop)
            workers = _WorkerWatch(client)
            while not finished.is_empty():
                CANCEL.check()  # SIGINT/SIGTERM: cancel the futures (below) and stop
                if not finished.has_ready():
                    if workers.gone_for() > WORKERS_TIMEOUT_S:  # tasks would wait forever
                        raise _no_workers(spec, len(done), len(paths))
                    time.sleep(0.1)
                    continue
                for future in finished.next_batch(block=False):
                    i = index[future.key]
                    done[i] = _result(future, paths[i], distributed)
                    if on_file is not None:
                        on_file(done[i])
        except KeyboardInterrupt:
            client.cancel(futures, force=True)
            raise
        except HistetlError:
            client.cancel(futures, force=True)
            raise
        except Exception as exc:
            # a task that raised is a bug (shown as one); anything else: the scheduler is gone
            if future is not None and future.status == "error":
                client.cancel(futures, force=True)
                raise
            # the scheduler went away: nothing more can be known
            raise _lost(spec, len(done), len(paths), exc) from None
        if writers is not None:  # the scheduler forgets the run's semaphore
            with suppress(Exception):
                writers.close()
    missing = [paths[i] for i in range(len(paths)) if i not in done]
    if missing:
        raise _lost(spec, len(done), len(paths), None)
    return [done[i] for i in range(len(paths))]


def _task(
    task: Task, options: ReplayOptions, run_id: str, path: Path | str, writers: Any | None
) -> FileReport | None:  # pragma: no cover - runs in the worker processes
    """On a worker: the same per-file function as the local pool, under the writers' cap."""
    import pyarrow as pa

    # Dask's nanny starts workers with OMP_NUM_THREADS=1, which Arrow takes as the size of its
    # CPU pool: that halves a file's speed here. Give it the cores, as a local pool has them.
    pa.set_cpu_count(max(pa.cpu_count(), len(os.sched_getaffinity(0))))

    with writers if writers is not None else nullcontext():
        return task(options, run_id, path)


def _unusable(paths: list[str], quarantine_dir: str) -> list[tuple[str, str]]:  # pragma: no cover
    """On a worker: the paths it cannot open (and the quarantine folder, if it could not create
    or write it), with the reason."""
    bad = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as exc:
            bad.append((path, exc.strerror or type(exc).__name__))
    folder = Path(quarantine_dir)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the nearest folder that exists is where it gets created
    if not os.access(folder, os.W_OK | os.X_OK):
        bad.append((quarantine_dir, f"{folder} is not writable (quarantine folder)"))
    return bad


def _check_visible(client: Any, paths: Sequence[Path], quarantine_dir: Path) -> None:
    """Every worker opens every input path before any task starts."""
    try:
        answers: dict[str, list[tuple[str, str]]] = client.run(
            _unusable, [str(p) for p in paths], str(quarantine_dir)
        )
    except Exception as exc:
        raise LoadError(
            f"could not ask the workers to check the input paths: {exc}",
            where="--cluster",
            hint="check that every worker runs the same histetl version as this machine",
        ) from None
    for worker, bad in sorted(answers.items()):
        if bad:
            path, reason = bad[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise ConfigError(
                f"worker {worker} cannot read {path}: {reason}{more}; nothing was loaded",
                where="--cluster",
                hint="input files, rules, mapping and the quarantine folder must be visible "
                "to every worker under the same path (a shared filesystem)",
            )


def _result(future: Any, path: Path | str, distributed: Any) -> FileReport:
    """A task's report; a task that kept killing its workers is a failed file, not a run."""
    try:
        report = future.result()
    except distributed.KilledWorker as exc:
        return FileReport(
            path=str(path),
            status="failed",
            error=f"the workers processing this file died ({exc}); nothing was loaded from it",
        )
    if report is None:  # the worker was stopping: the file was rolled back, or not started
        return FileReport(
            path=str(path),
            status="failed",
            error="the worker stopped before the file was loaded; nothing was loaded from it",
        )
    assert isinstance(report, FileReport)
    return report


@contextmanager
def _client(spec: ClusterSpec) -> Iterator[Any]:
    """A client of the scheduler (or of a LocalCluster started here), closed on the way out."""
    distributed = _distributed()
    cluster = None
    # Dask logs its own account of a lost scheduler or a dead worker; histetl says it in one
    # line (a worker's own logs stay on the worker)
    names = ["distributed"] + [
        name for name in logging.root.manager.loggerDict if name.startswith("distributed.")
    ]  # dask's logging config gives some of them (distributed.client) levels of their own
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        if spec.local_workers is not None:
            cluster = distributed.LocalCluster(
                n_workers=spec.local_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                host="127.0.0.1",
                silence_logs=logging.CRITICAL,
            )
            address = cluster.scheduler_address
        else:
            assert spec.address is not None
            address = spec.address
        try:
            client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise LoadError(
                f"cannot reach the Dask scheduler at {address}: {_reason(exc)}; nothing loaded",
                where="--cluster",
                hint="start it with `dask scheduler` (and `dask worker` processes), or check "
                "the address",
            ) from None
        try:
            try:
                client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
            except TimeoutError:
                raise LoadError(
                    f"no Dask worker joined the scheduler at {address} within "
                    f"{WORKERS_TIMEOUT_S:.0f}s; nothing loaded",
                    where="--cluster",
                    hint=f"start workers with `dask worker {address}`",
                ) from None
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


class _WorkerWatch:
    """How long the scheduler has had no worker at all (asked at most once a second)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._asked = 0.0
        self._none_since: float | None = None

    def gone_for(self) -> float:
        now = time.monotonic()
        if now - self._asked >= 1.0:
            self._asked = now
            if self._client.nthreads():
                self._none_since = None
            elif self._none_since is None:
                self._none_since = now
        return 0.0 if self._none_since is None else now - self._none_since


def _no_workers(spec: ClusterSpec, done: int, total: int) -> LoadError:
    return LoadError(
        f"no Dask worker left on the scheduler at {spec.uri} for {WORKERS_TIMEOUT_S:.0f}s; "
        f"{done} of {total} files finished",
        where="--cluster",
        hint="every finished file is committed with its ledger row (a file a dying worker had "
        "started is rolled back): start workers (`dask worker ADDRESS`) and rerun the same "
        "command to load the rest",
    )


def _lost(spec: ClusterSpec, done: int, total: int, exc: Exception | None) -> LoadError:
    detail = f": {_reason(exc)}" if exc is not None else ""
    return LoadError(
        f"lost the Dask scheduler at {spec.uri}{detail}; {done} of {total} files finished",
        where="--cluster",
        hint="every finished file is committed with its ledger row: restart the scheduler "
        "and rerun the same command to load the rest",
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text and text[0] else type(exc).__name__


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return distributed
