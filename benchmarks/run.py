"""The comparison runner behind `just bench`: histetl side by side with the alternatives.

    python -m benchmarks.run [--rows N] [--repeat R] [--budget S] [--only SECTION,...]

Default size: 10M trades, 5M mbp-1 and a definition file (seeded, generated and cached);
PostgreSQL comparisons on min(3M, N) trades, the row-wise loader on min(100k, that). Size knob:
--rows or HISTETL_BENCH_ROWS. Starts its own PostgreSQL from the machine's server binaries
(or uses $HISTETL_TEST_PG_URI). Prints a markdown table; writes benchmarks/results/latest.json
and latest.md, and refreshes the marked block in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import sections
from benchmarks.bench import Bench
from benchmarks.data import DEFAULT_DIR, DataSet, Sizes
from benchmarks.measure import BenchError
from benchmarks.ratios import ratios, targets
from benchmarks.report import machine, now, write

ROWS_ENV = "HISTETL_BENCH_ROWS"
DEFAULT_ROWS = 10_000_000
ALL = ("startup", "decode", "validate", "pg", "duckdb", "delta", "workers", "cluster")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--rows", type=int, help=f"trades rows N (default ${ROWS_ENV} or 10M)")
    parser.add_argument("--repeat", type=int, default=3, help="most runs per path (median kept)")
    parser.add_argument(
        "--budget",
        type=float,
        default=30.0,
        help="no further run of a path past this many seconds (x2 for PostgreSQL load vs COPY)",
    )
    parser.add_argument("--only", help=f"comma-separated sections of {','.join(ALL)}")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR, help="generated data cache")
    parser.add_argument("--fresh-data", action="store_true", help="regenerate the data files")
    return parser.parse_args(argv)


def _rows(args: argparse.Namespace) -> int:
    text = args.rows if args.rows is not None else os.environ.get(ROWS_ENV, DEFAULT_ROWS)
    try:
        rows = int(str(text).replace("_", ""))
    except ValueError:
        raise SystemExit(f"{ROWS_ENV} must be a whole number of rows, not {text!r}") from None
    if rows < 1000:
        raise SystemExit(f"--rows / {ROWS_ENV} must be at least 1000 (got {rows})")
    return rows


def _check_postgres() -> None:
    """Fail before any work when no PostgreSQL can be started."""
    from tests.support.pgserver import PG_URI_ENV, find_pg_bindir

    if os.environ.get(PG_URI_ENV):
        return
    try:
        find_pg_bindir()
    except RuntimeError as exc:
        raise SystemExit(
            f"benchmarks: {exc}.\nOn a fresh machine `scripts/bootstrap --dev` installs them "
            "(as root with apt); or run without the database: --only decode,validate,duckdb,delta"
        ) from None


def _compile_histetl() -> None:
    """Measure histetl as users run it, its bytecode compiled (`scripts/bootstrap` installs it
    so): in a dev checkout under PYTHONDONTWRITEBYTECODE every process would compile each module
    it imports again (about 0.1 s of a replay's start-up)."""
    import compileall

    import histetl

    compileall.compile_dir(Path(histetl.__file__).parent, quiet=1)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    _compile_histetl()
    rows = _rows(args)
    only = tuple(s for s in (args.only or ",".join(ALL)).split(",") if s)
    unknown = set(only) - set(ALL)
    if unknown:
        raise SystemExit(f"--only: unknown sections {sorted(unknown)}; choose from {ALL}")
    if {"pg", "workers", "cluster"} & set(only):
        _check_postgres()
    sizes = Sizes.for_rows(rows)
    started, started_at, load_before = time.perf_counter(), now(), os.getloadavg()
    bench = Bench(args.repeat, args.budget)
    data = DataSet(args.data_dir, fresh=args.fresh_data)
    print(f"histetl benchmarks: {rows:,} trades rows, data in {data.dir}", file=sys.stderr)
    pg_version, workers_info = None, {"available": None, "reason": "not run (--only)"}
    cluster_info: dict[str, Any] = {"available": None, "reason": "not run (--only)"}
    try:
        with tempfile.TemporaryDirectory(prefix="histetl-bench-") as scratch:
            tmp = Path(scratch)
            if "startup" in only:
                sections.startup(bench)
            if "decode" in only:
                sections.decode(bench, data, sizes, tmp)
            if "validate" in only:
                sections.validate(bench, data, sizes)
            if {"pg", "workers", "cluster"} & set(only):
                pg_version, workers_info, cluster_info = _postgres(bench, data, sizes, tmp, only)
            if "duckdb" in only:
                sections.duckdb(bench, data, sizes, tmp)
            if "delta" in only:
                sections.delta(bench, data, sizes, tmp)
    except BenchError as exc:
        print(f"benchmarks: a measured path failed: {exc}", file=sys.stderr)
        return 1
    values = ratios(bench.timings)
    results: dict[str, Any] = {
        "machine": machine(pg_version, load_before),
        "command": _command(rows, args),
        "rows": rows,
        "sizes": dataclasses.asdict(sizes),
        "repeat": args.repeat,
        "budget_seconds": args.budget,
        "started_at": started_at,
        "finished_at": now(),
        "seconds_total": round(time.perf_counter() - started, 1),
        "timings": {k: t.to_json() for k, t in bench.timings.items()},
        "throughput": {
            f"{k}_rows_per_s": round(t.rows_per_s or 0)
            for k, t in bench.timings.items()
            if t.section == "validate"
        },
        "ratios": values,
        "targets": targets(values, dataclasses.asdict(sizes)),
        "workers": workers_info,
        "cluster": cluster_info,
        "notes": bench.notes,
    }
    print(write(results, bench.timings))
    return 0


def _postgres(
    bench: Bench, data: DataSet, sizes: Sizes, tmp: Path, only: tuple[str, ...]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    from benchmarks import pg

    server = pg.Pg()
    try:
        if "pg" in only:
            pg.loads(bench, server, data, sizes, tmp)
        info = {"available": None, "reason": "not run (--only)"}
        if "workers" in only:
            info = pg.workers(bench, server, data, sizes, tmp)
        cluster = {"available": None, "reason": "not run (--only)"}
        if "cluster" in only:
            cluster = pg.cluster(bench, server, data, sizes, tmp)
        return server.version, info, cluster
    finally:
        server.close()


def _command(rows: int, args: argparse.Namespace) -> str:
    parts = [] if rows == DEFAULT_ROWS else [f"{ROWS_ENV}={rows}"]
    parts.append("just bench")
    extra = []
    if args.repeat != 3:
        extra.append(f"--repeat {args.repeat}")
    if args.budget != 30.0:
        extra.append(f"--budget {args.budget:g}")
    if args.only:
        extra.append(f"--only {args.only}")
    if extra:  # not expressible through just: the module itself
        return " ".join([*parts[:-1], ".venv/bin/python -m benchmarks.run", *extra])
    return " ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
