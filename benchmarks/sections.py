"""The comparisons that need no database server: start-up, decode, zstd, validation, DuckDB,
Delta Lake."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench import Bench, Entry, Sample
from benchmarks.data import DataSet, Sizes
from benchmarks.measure import VENV_BIN, BenchError, histetl, probe, run_process


def replay(
    tmp: Path,
    *paths: Path,
    db: str | None = None,
    force: bool = False,
    options: tuple[str, ...] = (),
) -> Sample:
    """`histetl replay` as a user runs it. Seconds are the report's per-file seconds (the
    work on the files); the process wall time (interpreter start, connecting) is kept too."""
    args: list[str | Path] = ["replay", *paths, "--quarantine-dir", tmp / "quarantine"]
    args += ["--db", db] if db else ["--validate-only"]
    if force:
        args.append("--force")
    args += options
    proc = histetl(*args, report=tmp / f"report-{uuid.uuid4().hex}.json")
    files = proc.result["files"]
    failed = [f for f in files if f["status"] == "failed"]
    if failed:
        raise BenchError(f"histetl replay failed on {failed[0]['path']}: {failed[0]['error']}")
    totals = proc.result["totals"]
    extra = {
        "status": sorted({f["status"] for f in files}),
        "totals": totals,
        "file_seconds": {Path(f["path"]).name: round(f["seconds"], 4) for f in files},
    }
    rows = totals["records"] or totals["skipped"]
    return Sample(sum(f["seconds"] for f in files), rows, proc, extra)


def _process(*cmd: str) -> Sample:
    """A whole process, timed start to exit."""
    proc = run_process(list(cmd))
    return Sample(proc.wall, 0, proc)


def probe_sample(op: str, *args: str | Path | int, rows: int | None = None) -> Sample:
    proc = probe(op, *args)
    result = dict(proc.result)
    seconds = result.pop("seconds")
    count = rows if rows is not None else result.pop("rows")
    return Sample(seconds, count, proc, {k: v for k, v in result.items() if k != "rows"})


def decode(bench: Bench, data: DataSet, sizes: Sizes, tmp: Path) -> None:
    n, small = sizes.trades, Sizes.small(sizes.trades)
    paths = [
        Entry(
            "decode.histetl_validate",
            "histetl replay --validate-only (decode + map + validate)",
            lambda rows: replay(tmp, data.trades(rows)),
        ),
        Entry(
            "decode.histetl_validate_html",
            "histetl replay --validate-only --html (plus the quality report page)",
            lambda rows: replay(
                tmp, data.trades(rows), options=("--html", str(tmp / f"{uuid.uuid4().hex}.html"))
            ),
        ),
        Entry(
            "decode.histetl_arrow",
            "histetl decode + map only (DBN -> Arrow with symbols)",
            lambda rows: probe_sample("decode", data.trades(rows)),
        ),
    ]
    for price_type in ("fixed", "decimal"):
        paths.append(
            Entry(
                f"decode.to_df_{price_type}",
                f'DBNStore.to_df(price_type="{price_type}", map_symbols=True)',
                lambda rows, p=price_type: probe_sample("to_df", data.trades(rows), p),  # type: ignore[misc]
            )
        )
    paths.append(
        Entry(
            "decode.to_ndarray",
            "DBNStore.to_ndarray() (raw structs: no mapping, no symbols)",
            lambda rows: probe_sample("to_ndarray", data.trades(rows)),
        )
    )
    bench.group(paths, n, small)
    zst = [
        Entry(
            "zstd.histetl_validate",
            "histetl replay --validate-only on .dbn.zst",
            lambda rows: replay(tmp, data.trades(rows, zst=True)),
        ),
        Entry(
            "zstd.decompress",
            "zstd decompression alone (python-zstandard, streamed)",
            lambda rows: probe_sample("zstd", data.trades(rows, zst=True), rows=rows),
        ),
    ]
    if zstd_cli := shutil.which("zstd"):  # the reference, as a whole process
        zst.append(
            Entry(
                "zstd.cli",
                "zstd -d FILE -o /dev/null (the zstd CLI, whole process)",
                lambda rows: _process(
                    zstd_cli, "-d", "-q", "-f", str(data.trades(rows, zst=True)), "-o", "/dev/null"
                ),
            )
        )
    bench.group(zst, n, small)


def validate(bench: Bench, data: DataSet, sizes: Sizes) -> None:
    limit = sizes.validate
    bench.measure(
        "validate.trades",
        "full rule set on trades (Polars, batches of 100k)",
        lambda rows: probe_sample("validate", data.trades(sizes.trades), rows),
        limit,
    )
    mbp = min(sizes.mbp1, 5_000_000)
    bench.measure(
        "validate.mbp1",
        "full rule set on mbp-1 (Polars, batches of 100k)",
        lambda rows: probe_sample("validate", data.mbp1(sizes.mbp1), rows),
        mbp,
    )


def duckdb(bench: Bench, data: DataSet, sizes: Sizes, tmp: Path) -> None:
    def drop(target: Path) -> None:
        for leftover in tmp.glob(target.name + "*"):  # .wal, and .tmp/ if DuckDB spilled
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()

    _file_target(bench, data, sizes, tmp, "duckdb", "DuckDB", drop)


def delta(bench: Bench, data: DataSet, sizes: Sizes, tmp: Path) -> None:
    """Replay into a Delta Lake on local disk: a folder per table, one commit per file."""
    _file_target(bench, data, sizes, tmp, "delta", "Delta Lake", shutil.rmtree)


def _file_target(
    bench: Bench,
    data: DataSet,
    sizes: Sizes,
    tmp: Path,
    scheme: str,
    name: str,
    drop: Callable[[Path], None],
) -> None:
    """A target that is a file or folder on this machine (`scheme:///path`): the three files
    loaded together; then the trades file alone (its peak RSS at a quarter of the rows and at
    all of them), and --force on the target that first load left: every row a duplicate."""

    def fresh() -> Path:
        return tmp / f"bench-{uuid.uuid4().hex}.{scheme}"

    def load(target: Path, *files: Path, force: bool = False) -> Sample:
        return replay(tmp, *files, db=f"{scheme}:///{target}", force=force)

    def run(rows: int) -> Sample:
        files = (data.trades(rows), data.mbp1(max(rows // 2, 1)), data.definition())
        target = fresh()
        try:
            return load(target, *files)
        finally:
            drop(target)

    bench.measure(
        f"{scheme}.load",
        f"histetl replay trades + mbp-1 + definition -> {name}",
        run,
        sizes.trades,
        Sizes.small(sizes.trades),
    )
    loaded: dict[int, Path] = {}

    def first(rows: int) -> Sample:
        if rows in loaded:  # its --force run was skipped (over the time budget)
            drop(loaded.pop(rows))
        target = loaded[rows] = fresh()
        return load(target, data.trades(rows))

    def forced(rows: int) -> Sample:
        target = loaded.pop(rows, None)
        if target is None:  # not left by `first`: load it first, unmeasured
            first(rows)
            target = loaded.pop(rows)
        try:
            return load(target, data.trades(rows), force=True)
        finally:
            drop(target)

    bench.group(
        [
            Entry(f"{scheme}.trades", f"histetl replay trades -> {name} (first load)", first),
            Entry(
                f"{scheme}.trades_force",
                "histetl replay --force: trades already loaded",
                forced,
            ),
        ],
        sizes.trades,
        Sizes.small(sizes.trades),
    )
    for target in loaded.values():
        drop(target)


def startup(bench: Bench) -> None:
    """`histetl --help` against the interpreter's own start (issue 11: a command that does
    nothing much costs little more than Python itself)."""

    bench.group(
        [
            Entry(
                "startup.python",
                "python -c pass (the interpreter alone)",
                lambda _r: _process(sys.executable, "-c", "pass"),
            ),
            Entry(
                "startup.help",
                "histetl --help",
                lambda _r: _process(str(VENV_BIN / "histetl"), "--help"),
            ),
        ],
        1,
    )
