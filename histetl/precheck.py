"""The ledger pre-check: a rerun that finds nothing new, answered before the pipeline loads.

A cron job that replays a folder mostly meets files it loaded before. Before any stage is
imported (no decoder, no Polars, no database driver stack), `skipped_run` hashes the inputs and
asks the target's ledger over a light connection (`histetl.targets.probe`). When every file is
already loaded into the table its schema maps to, the run report is built from the ledger: the
same report, lines and exit code as a run through the pipeline.

The pre-check only ever answers "all already loaded". Anything else goes through the pipeline,
which checks the ledger again under its lock: a file not in the ledger, --force,
--validate-only, rules or mapping files (they are compiled, so that a bad one still fails
before any work), a cluster (whose workers must see every file), a target the probe cannot
read cheaply.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Collection, Sequence

from histetl.dbn import table_name
from histetl.options import ReplayOptions
from histetl.report import FileReport, RunReport, new_run_id
from histetl.source.files import Source, expand_paths, sha256_file
from histetl.targets import RetryPolicy, display
from histetl.targets.probe import Loaded, loaded_files


def skipped_run(options: ReplayOptions, patterns: Sequence[str]) -> RunReport | None:
    """The run report when every file `patterns` names is already loaded, else None (run the
    pipeline). Options and paths are checked as the pipeline checks them, in the same order."""
    if (
        options.force
        or options.validate_only
        or options.rules_files
        or options.mapping_file is not None
        or options.cluster is not None
    ):
        return None
    options.check()
    paths = expand_paths(patterns)
    digests: dict[Source, str] = {}
    seconds: dict[Source, float] = {}
    for path in paths:
        started = time.perf_counter()
        digests[path] = sha256_file(path)
        seconds[path] = time.perf_counter() - started
    started = time.perf_counter()
    by_digest = ledger_hits(options.db, set(digests.values()), options.db_retry)
    if by_digest is None or any(sha256 not in by_digest for sha256 in digests.values()):
        return None
    lookup_share = (time.perf_counter() - started) / len(paths)
    report = RunReport(new_run_id(), display(options.db), "load")
    for path, sha256 in digests.items():
        entry = by_digest[sha256]
        report.files.append(
            FileReport(
                path=str(path),
                dataset=entry.dataset,
                schema=entry.schema,
                table=entry.table,
                status="skipped",
                skipped=entry.records,
                sha256=sha256,
                seconds=seconds[path] + lookup_share,
            )
        )
    report.finished_at = dt.datetime.now(dt.UTC).isoformat()
    return report


def ledger_hits(
    uri: str,
    digests: Collection[str],
    policy: RetryPolicy,
    table_for: Callable[[str], str] = table_name,
) -> dict[str, Loaded] | None:
    """The ledger rows of these sha256 digests that count as "already loaded": the one rule of
    `replay` and `run` (`Replayer.loaded_entry`), the sha256 in the table its schema maps to
    now (`table_for`; without a mapping file, the canonical table). None when the target
    cannot be read cheaply."""
    entries = loaded_files(uri, digests, policy)
    if entries is None:
        return None
    return {e.sha256: e for e in entries if e.table == table_for(e.schema)}
