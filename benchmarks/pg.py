"""PostgreSQL comparisons on the same trades, in one private server started for the run.

* histetl end to end into an EMPTY table (a fresh schema per load);
* the database's limit: server-side binary `COPY t FROM '/file'` of the same rows (dumped from
  histetl's table) into `CREATE TABLE ... (LIKE trades INCLUDING ALL)`;
* a psycopg COPY loader and a pydantic row-wise loader (benchmarks/loaders.py), whose rows are
  checked against histetl's;
* reruns: the ledger skip, and `--force` (every row a duplicate);
* a half-overlapping file: the table already holds the first half of the file's rows (an
  overlapping download), so half the rows load and half are duplicates;
* `--workers` 1 vs 2 on several files, when `histetl replay` has that option;
* the same multi-file set with `--workers 1`, `--workers 2` and `--cluster local:2` (Dask), and
  the cluster's per-task overhead on small files, when `--cluster` and Dask are available.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.bench import Bench, Entry, Sample
from benchmarks.data import DataSet, Sizes
from benchmarks.measure import BenchError, replay_help
from benchmarks.sections import probe_sample, replay
from tests.support.pgserver import start_postgres, with_search_path

_CHECKSUM = """SELECT count(*), sum(ts_recv_ns::numeric), sum(ts_event_ns::numeric),
  sum(extract(epoch FROM ts_recv)), sum(extract(epoch FROM ts_event)), sum(price), sum(size),
  sum(sequence), sum(record_hash::numeric), sum(ts_in_delta), sum(flags), sum(instrument_id),
  string_agg(DISTINCT symbol, ',' ORDER BY symbol), string_agg(DISTINCT side, ',' ORDER BY side)
FROM {table}"""


class Pg:
    """The server, its throw-away schemas, and a directory its `postgres` user can write."""

    def __init__(self) -> None:
        self.server = start_postgres()
        self.copy_dir = Path(tempfile.mkdtemp(prefix="histetl-bench-copy-"))
        os.chmod(self.copy_dir, 0o777)  # the server (user postgres) writes and reads here
        self.schemas: list[str] = []
        self.version = str(self.sql(self.server.uri, "SHOW server_version")[0][0])

    def sql(self, uri: str, statement: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(statement)  # type: ignore[arg-type]
            return list(cur.fetchall()) if cur.description else [(cur.rowcount,)]

    def new_schema(self, prefix: str) -> tuple[str, str]:
        name = f"bench_{prefix}_{uuid.uuid4().hex[:8]}"
        self.sql(self.server.uri, f'CREATE SCHEMA "{name}"')
        self.schemas.append(name)
        self.checkpoint()
        return self.uri(name), name

    def uri(self, schema: str) -> str:
        return with_search_path(self.server.uri, schema, "public")

    def drop(self, schema: str) -> None:
        self.sql(self.server.uri, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self.schemas.remove(schema)

    def checkpoint(self) -> None:
        """Flush before a timed load, so one load's writes do not land on the next one."""
        self.sql(self.server.uri, "CHECKPOINT")

    def same_rows(self, expected: str, actual: str, exact: bool) -> None:
        """Raise unless `actual`.trades holds exactly the rows of `expected`.trades (EXCEPT
        both ways when exact, else a checksum over every column)."""
        a, b = f'"{expected}".trades', f'"{actual}".trades'
        if exact:
            query = (
                f"SELECT (SELECT count(*) FROM (TABLE {a} EXCEPT ALL TABLE {b}) x) + "
                f"(SELECT count(*) FROM (TABLE {b} EXCEPT ALL TABLE {a}) y)"
            )
            differ = self.sql(self.server.uri, query)[0][0]
            if differ:
                raise BenchError(f"{b} differs from histetl's {a} in {differ} rows")
            return
        want = self.sql(self.server.uri, _CHECKSUM.format(table=a))[0]
        got = self.sql(self.server.uri, _CHECKSUM.format(table=b))[0]
        if want != got:
            raise BenchError(f"{b} differs from histetl's {a}: checksum {got} != {want}")

    def can_copy_files(self, bench: Bench) -> bool:
        """Server-side COPY needs the server on this machine (and a superuser)."""
        try:
            self.sql(self.server.uri, f"COPY (SELECT 1) TO '{self.copy_dir / 'probe.bin'}'")
        except psycopg.Error as exc:
            bench.note(f"server-side COPY not measured: {str(exc).strip().splitlines()[0]}")
            return False
        return True

    def close(self) -> None:
        for schema in list(self.schemas):
            self.drop(schema)
        self.server.stop()
        shutil.rmtree(self.copy_dir, ignore_errors=True)


def loads(bench: Bench, pg: Pg, data: DataSet, sizes: Sizes, tmp: Path) -> None:
    loaded: dict[int, str] = {}  # rows -> the schema holding histetl's last load of them

    def histetl_load(rows: int) -> Sample:
        uri, schema = pg.new_schema("histetl")
        pg.checkpoint()  # as before the server-side COPY: neither pays for earlier writes
        sample = replay(tmp, data.trades(rows), db=uri)
        if sample.extra["totals"]["loaded"] != rows:
            raise BenchError(f"histetl loaded {sample.extra['totals']} of {rows} rows")
        if rows in loaded:
            pg.drop(loaded[rows])
        loaded[rows] = schema
        return sample

    def server_copy(rows: int) -> Sample:
        uri = pg.uri(loaded[rows])
        dump = pg.copy_dir / f"trades-{rows}.bin"
        if not dump.exists():
            pg.sql(uri, f"COPY trades TO '{dump}' (FORMAT binary)")
        pg.sql(uri, "DROP TABLE IF EXISTS trades_copy")
        pg.sql(uri, "CREATE TABLE trades_copy (LIKE trades INCLUDING ALL)")
        pg.checkpoint()
        started = time.perf_counter()
        copied = pg.sql(uri, f"COPY trades_copy FROM '{dump}' (FORMAT binary)")[0][0]
        return Sample(time.perf_counter() - started, int(copied))

    def rerun(rows: int, force: bool) -> Sample:
        pg.checkpoint()
        sample = replay(tmp, data.trades(rows), db=pg.uri(loaded[rows]), force=force)
        totals = sample.extra["totals"]
        if (totals["duplicates"] if force else totals["skipped"]) != rows:
            raise BenchError(f"rerun (force={force}) of {rows} rows: {totals}")
        return sample

    def half_overlap(rows: int) -> Sample:
        source = loaded[rows]
        uri, schema = pg.new_schema("half")
        pg.sql(uri, f'CREATE TABLE trades (LIKE "{source}".trades INCLUDING ALL)')
        index = pg.sql(
            uri,
            f"SELECT indexname FROM pg_indexes WHERE schemaname = '{schema}' "
            "AND indexdef LIKE '%(symbol%'",
        )[0][0]
        pg.sql(uri, f'ALTER INDEX "{index}" RENAME TO trades_symbol_time')  # histetl's name
        middle = (
            f'(SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ts_recv) FROM "{source}".trades)'
        )
        held = pg.sql(
            uri, f'INSERT INTO trades SELECT * FROM "{source}".trades WHERE ts_recv < {middle}'
        )[0][0]
        pg.sql(uri, "VACUUM ANALYZE trades")
        pg.checkpoint()
        sample = replay(tmp, data.trades(rows), db=uri)
        totals = sample.extra["totals"]
        if (totals["loaded"], totals["duplicates"]) != (rows - held, held):
            raise BenchError(f"half-overlapping load of {rows} rows ({held} held): {totals}")
        pg.same_rows(source, schema, exact=False)
        pg.drop(schema)
        return sample

    def other_loader(op: str, rows: int, exact: bool) -> Sample:
        uri, schema = pg.new_schema(op)
        sample = probe_sample(op, data.trades(rows), uri)
        pg.same_rows(loaded[rows], schema, exact)
        pg.drop(schema)
        return sample

    n, small = sizes.pg, Sizes.small(sizes.pg)
    first = [Entry("pg.histetl_load", "histetl replay -> empty table (end to end)", histetl_load)]
    if pg.can_copy_files(bench):
        copy = "server-side COPY FROM binary file (database limit)"
        first.append(Entry("pg.server_copy", copy, server_copy))
    bench.group(first, n, small, budget_factor=2)  # the headline ratio: more rounds
    bench.measure(
        "pg.psycopg_copy",
        "psycopg COPY loader (to_df chunks + write_row)",
        lambda rows: other_loader("copy_load", rows, exact=False),
        n,
        small,
    )
    bench.measure(
        "pg.histetl_rerun",
        "histetl rerun of the loaded file (ledger skip)",
        lambda rows: rerun(rows, force=False),
        n,
        small,
    )
    bench.measure(
        "pg.histetl_force",
        "histetl --force rerun (every row a duplicate)",
        lambda rows: rerun(rows, force=True),
        n,
        small,
    )
    bench.measure(
        "pg.histetl_half",
        "histetl replay of a file whose first half the table holds (half duplicates)",
        half_overlap,
        n,
        small,
    )
    rowwise = [
        Entry(
            "pg.histetl_load_rowwise_rows",
            "histetl replay -> empty table, row-wise loader's rows",
            histetl_load,
        ),
        Entry(
            "pg.rowwise",
            "row-wise loader (pydantic per record, executemany ON CONFLICT, batches of 1000)",
            lambda rows: other_loader("rowwise_load", rows, exact=True),
        ),
    ]
    bench.group(rowwise, sizes.rowwise, Sizes.small(sizes.rowwise))


def workers(bench: Bench, pg: Pg, data: DataSet, sizes: Sizes, tmp: Path) -> dict[str, Any]:
    """`--workers` 1 vs 2 on four files (two trades, two mbp-1) into PostgreSQL."""
    if "--workers" not in replay_help():
        reason = "`histetl replay --help` shows no --workers option"
        bench.note(f"parallel replay not measured: {reason}")
        return {"available": False, "reason": reason}
    each = Sizes.small(sizes.pg)
    files = [data.file("trades", each, seed=s) for s in (21, 22)]
    files += [data.file("mbp-1", each, seed=s) for s in (23, 24)]

    def run(count: int) -> Sample:
        uri, schema = pg.new_schema(f"workers{count}")
        sample = replay(tmp, *files, db=uri, options=("--workers", str(count)))
        pg.drop(schema)
        assert sample.proc is not None
        sample.seconds = sample.proc.wall  # files overlap: the run's wall time is what counts
        return sample

    paths = [
        Entry(
            f"workers.{count}",
            f"histetl replay --workers {count}, 4 files -> PostgreSQL (wall)",
            lambda _rows, c=count: run(c),  # type: ignore[misc]
        )
        for count in (1, 2)
    ]
    bench.group(paths, each * 4, budget_factor=1.5)
    return {"available": True, "files": [f.name for f in files], "rows_per_file": each}


CLUSTER_FILES, SMALL_FILES, SMALL_ROWS = 8, 16, 1000


def cluster(bench: Bench, pg: Pg, data: DataSet, sizes: Sizes, tmp: Path) -> dict[str, Any]:
    """One set of 8 trades files: `--workers 1`, `--workers 2`, `--cluster local:2` (wall
    time, LocalCluster start included); then 1 vs 16 files of 1,000 rows, whose difference
    per extra file is the per-task cost, locally and on the cluster."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        reason = "Dask is not installed (pip install 'histetl[cluster]')"
        bench.note(f"cluster replay not measured: {reason}")
        return {"available": False, "reason": reason}
    if "--cluster" not in replay_help():
        reason = "`histetl replay --help` shows no --cluster option"
        bench.note(f"cluster replay not measured: {reason}")
        return {"available": False, "reason": reason}
    each = max(sizes.pg // CLUSTER_FILES, 1)
    files = [data.file("trades", each, seed=60 + i) for i in range(CLUSTER_FILES)]
    small = [data.file("trades", SMALL_ROWS, seed=80 + i) for i in range(SMALL_FILES)]

    def run(paths: list[Path], options: tuple[str, ...], label: str) -> Sample:
        uri, schema = pg.new_schema(label)
        sample = replay(tmp, *paths, db=uri, options=options)
        pg.drop(schema)
        if sample.extra["totals"]["loaded"] != sample.rows:
            raise BenchError(f"{label}: loaded {sample.extra['totals']} of {sample.rows} rows")
        assert sample.proc is not None
        sample.seconds = sample.proc.wall  # files overlap: the run's wall time is what counts
        return sample

    modes = {
        "workers1": ("--workers 1", ("--workers", "1")),
        "workers2": ("--workers 2", ("--workers", "2")),
        "local2": ("--cluster local:2", ("--cluster", "local:2")),
    }
    paths = [
        Entry(
            f"cluster.{key}",
            f"histetl replay {text}, {CLUSTER_FILES} files -> PostgreSQL (wall)",
            lambda _rows, o=options, k=key: run(files, o, k),  # type: ignore[misc]
        )
        for key, (text, options) in modes.items()
    ]
    bench.group(paths, each * CLUSTER_FILES, budget_factor=1.5)
    overhead = []
    for key in ("workers1", "local2"):
        text, options = modes[key]
        for count in (1, SMALL_FILES):
            overhead.append(
                Entry(
                    f"cluster.small_{key}_{count}",
                    f"histetl replay {text}, {count} file(s) of {SMALL_ROWS:,} rows (wall)",
                    lambda _rows, o=options, k=key, c=count: run(small[:c], o, k),  # type: ignore[misc]
                )
            )
    for entry in overhead:
        count = int(entry.key.rsplit("_", 1)[1])
        bench.group([entry], SMALL_ROWS * count)
    return {
        "available": True,
        "files": CLUSTER_FILES,
        "rows_per_file": each,
        "small_files": SMALL_FILES,
        "small_rows": SMALL_ROWS,
    }
