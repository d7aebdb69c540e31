"""Ratios between timings of one run, and the project's acceptance targets.

Every ratio is defined so that its meaning is in its name: `a_vs_b` is how many times faster
histetl's `a` is than `b` (higher is better), except where the name says `_share` or
`_overhead` (lower is better).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.bench import Timing

Timings = dict[str, Timing]


def _secs(t: Timings, key: str, process: bool = False) -> float | None:
    timing = t.get(key)
    if timing is None:
        return None
    return timing.process_seconds if process else timing.seconds


def _div(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _rate(t: Timings, key: str) -> float | None:
    timing = t.get(key)
    return timing.rows_per_s if timing else None


def ratios(t: Timings) -> dict[str, float | None]:
    v = "decode.histetl_validate"
    load = "pg.histetl_load"
    out = {
        # issue 11: start-up of a command that does little, against the interpreter's own
        "help_vs_interpreter": _div(_secs(t, "startup.help"), _secs(t, "startup.python")),
        # issue 2: decode + map + validate vs databento's to_df
        "decode_vs_to_df": _div(_secs(t, "decode.to_df_fixed"), _secs(t, v)),
        "decode_vs_to_df_decimal": _div(_secs(t, "decode.to_df_decimal"), _secs(t, v)),
        "decode_vs_to_ndarray": _div(_secs(t, "decode.to_ndarray"), _secs(t, v)),
        "decode_map_only_vs_to_df": _div(
            _secs(t, "decode.to_df_fixed"), _secs(t, "decode.histetl_arrow")
        ),
        "process_vs_to_df_process": _div(
            _secs(t, "decode.to_df_fixed", process=True), _secs(t, v, process=True)
        ),
        "zst_overhead_vs_decompress": _div(
            _secs(t, "zstd.histetl_validate"), _secs(t, "zstd.decompress")
        ),
        # issue 15: the same as whole processes, against the zstd CLI
        "zst_process_vs_zstd_cli": _div(
            _secs(t, "zstd.histetl_validate", process=True), _secs(t, "zstd.cli", process=True)
        ),
        # issue 14: the HTML quality report's cost on a validate-only replay
        "html_overhead": _div(
            _secs(t, "decode.histetl_validate_html", process=True), _secs(t, v, process=True)
        ),
        "html_overhead_file_seconds": _div(_secs(t, "decode.histetl_validate_html"), _secs(t, v)),
        # issue 4 / 7: PostgreSQL
        "load_vs_copy": _div(_secs(t, "pg.server_copy"), _secs(t, load)),
        "load_process_vs_copy": _div(_secs(t, "pg.server_copy"), _secs(t, load, process=True)),
        "load_vs_psycopg_copy": _div(_secs(t, "pg.psycopg_copy"), _secs(t, load)),
        "vs_rowwise_loader": _div(_rate(t, load), _rate(t, "pg.rowwise")),
        "vs_rowwise_loader_same_rows": _div(
            _secs(t, "pg.rowwise"), _secs(t, "pg.histetl_load_rowwise_rows")
        ),
        "rerun_vs_first_load": _div(_secs(t, "pg.histetl_rerun"), _secs(t, load)),
        "rerun_process_vs_first_load_process": _div(
            _secs(t, "pg.histetl_rerun", process=True), _secs(t, load, process=True)
        ),
        "force_rerun_vs_first_load": _div(_secs(t, "pg.histetl_force"), _secs(t, load)),
        # issue 15: a file that overlaps the table by half vs a fresh load
        "half_overlap_vs_first_load": _div(_secs(t, "pg.histetl_half"), _secs(t, load)),
        # DuckDB: loading the trades file vs databento merely decoding it
        "duckdb_load_vs_to_df": _div(
            _secs(t, "decode.to_df_fixed"), _duckdb_trades_seconds(t.get("duckdb.load"))
        ),
        # issue 15: --force on a loaded file (all duplicates) vs its first load, on DuckDB
        "duckdb_force_vs_first_load": _div(
            _secs(t, "duckdb.trades_force"), _secs(t, "duckdb.trades")
        ),
        # issue 13: replay into a local Delta Lake vs the same into DuckDB, and --force on it
        "delta_load_vs_duckdb_load": _div(_secs(t, "duckdb.load"), _secs(t, "delta.load")),
        "delta_trades_vs_duckdb_trades": _div(_secs(t, "duckdb.trades"), _secs(t, "delta.trades")),
        "delta_force_vs_first_load": _div(_secs(t, "delta.trades_force"), _secs(t, "delta.trades")),
        "workers_2_vs_1": _div(_secs(t, "workers.1"), _secs(t, "workers.2")),
        # issue 12: the same files on one worker, two local processes and a 2-worker LocalCluster
        "cluster_workers2_vs_workers1": _div(
            _secs(t, "cluster.workers1"), _secs(t, "cluster.workers2")
        ),
        "cluster_local2_vs_workers1": _div(
            _secs(t, "cluster.workers1"), _secs(t, "cluster.local2")
        ),
        "cluster_local2_vs_workers2": _div(
            _secs(t, "cluster.workers2"), _secs(t, "cluster.local2")
        ),
        "cluster_task_overhead_s": _per_extra_file(t, "local2"),
        "local_task_overhead_s": _per_extra_file(t, "workers1"),
    }
    for key, timing in t.items():
        if timing.rss_growth is not None:
            out[f"rss_growth.{key}"] = round(timing.rss_growth, 3)
    return out


def _per_extra_file(t: Timings, mode: str) -> float | None:
    """Wall seconds each extra small file adds (16 files vs 1): the per-task cost."""
    many = [k for k in t if k.startswith(f"cluster.small_{mode}_") and not k.endswith("_1")]
    one, more = _secs(t, f"cluster.small_{mode}_1"), _secs(t, many[0]) if many else None
    if one is None or more is None:
        return None
    count = int(many[0].rsplit("_", 1)[1])
    return round((more - one) / (count - 1), 4)


def _duckdb_trades_seconds(timing: Timing | None) -> float | None:
    if timing is None:
        return None
    per_file = timing.extra.get("file_seconds", {})
    trades = [s for name, s in per_file.items() if name.startswith("trades-")]
    return float(trades[0]) if trades else None


@dataclass(frozen=True)
class Target:
    issue: int
    claim: str
    ratio: str
    goal: str
    met: Callable[[float], bool]
    size: str = ""  # the Sizes field the target is stated for
    rows: int = 0  # ... and at how many rows


DECODE_ROWS, PG_ROWS = 10_000_000, 3_000_000


RSS_GROWTH_LIMIT = 1.25  # peak RSS at 4x the rows: allowed growth for "does not grow"
TARGETS = (
    Target(
        2,
        "decode + map + validate vs to_df(fixed, map_symbols)",
        "decode_vs_to_df",
        ">= 15x",
        lambda x: x >= 15,
        "trades",
        DECODE_ROWS,
    ),
    Target(
        2,
        "replay --validate-only process vs to_df process (wall)",
        "process_vs_to_df_process",
        ">= 15x",
        lambda x: x >= 15,
        "trades",
        DECODE_ROWS,
    ),
    Target(
        2,
        ".dbn.zst: decode + map + validate vs zstd decompression alone",
        "zst_overhead_vs_decompress",
        "<= 1.5x",
        lambda x: x <= 1.5,
        "trades",
        DECODE_ROWS,
    ),
    Target(
        15,
        ".dbn.zst: replay --validate-only vs the zstd CLI (whole processes)",
        "zst_process_vs_zstd_cli",
        "<= 1.5x",
        lambda x: x <= 1.5,
        "trades",
        DECODE_ROWS,
    ),
    Target(
        2,
        "peak RSS of replay --validate-only at 4x the rows",
        "rss_growth.decode.histetl_validate",
        f"<= {RSS_GROWTH_LIMIT}x",
        lambda x: x <= RSS_GROWTH_LIMIT,
    ),
    Target(
        14,
        "replay --validate-only --html / without --html (whole process: figures + page)",
        "html_overhead",
        "<= 1.10",
        lambda x: x <= 1.10,
        "trades",
        DECODE_ROWS,
    ),
    Target(
        4,
        "PostgreSQL load speed / server-side binary COPY (file seconds)",
        "load_vs_copy",
        ">= 0.7",
        lambda x: x >= 0.7,
        "pg",
        PG_ROWS,
    ),
    Target(
        4,
        "PostgreSQL load speed / server-side binary COPY (whole process)",
        "load_process_vs_copy",
        ">= 0.7",
        lambda x: x >= 0.7,
        "pg",
        PG_ROWS,
    ),
    Target(
        4,
        "rerun of a loaded file / first load (file seconds)",
        "rerun_vs_first_load",
        "< 0.05",
        lambda x: x < 0.05,
        "pg",
        PG_ROWS,
    ),
    Target(
        11,
        "rerun of a loaded file / first load (whole process)",
        "rerun_process_vs_first_load_process",
        "< 0.05",
        lambda x: x < 0.05,
        "pg",
        PG_ROWS,
    ),
    Target(
        15,
        "PostgreSQL load speed / server-side binary COPY (whole process)",
        "load_process_vs_copy",
        ">= 0.95",
        lambda x: x >= 0.95,
        "pg",
        PG_ROWS,
    ),
    Target(
        15,
        "--force rerun (every row a duplicate) / first load (file seconds)",
        "force_rerun_vs_first_load",
        "<= 1.0",
        lambda x: x <= 1.0,
        "pg",
        PG_ROWS,
    ),
    Target(
        15,
        "file overlapping the table by half / first load (file seconds)",
        "half_overlap_vs_first_load",
        "<= 1.0",
        lambda x: x <= 1.0,
        "pg",
        PG_ROWS,
    ),
    Target(
        7,
        "peak RSS of the PostgreSQL load at 4x the rows",
        "rss_growth.pg.histetl_load",
        f"<= {RSS_GROWTH_LIMIT}x",
        lambda x: x <= RSS_GROWTH_LIMIT,
    ),
    Target(
        7,
        "peak RSS of the DuckDB load at 4x the rows",
        "rss_growth.duckdb.load",
        f"<= {RSS_GROWTH_LIMIT}x",
        lambda x: x <= RSS_GROWTH_LIMIT,
    ),
    Target(
        15,
        "peak RSS of the DuckDB load of trades at 4x the rows",
        "rss_growth.duckdb.trades",
        f"<= {RSS_GROWTH_LIMIT}x",
        lambda x: x <= RSS_GROWTH_LIMIT,
    ),
    Target(
        13,
        "peak RSS of the Delta Lake load at 4x the rows",
        "rss_growth.delta.load",
        f"<= {RSS_GROWTH_LIMIT}x",
        lambda x: x <= RSS_GROWTH_LIMIT,
    ),
    Target(
        13,
        "peak RSS of the Delta Lake load of trades at 4x the rows",
        "rss_growth.delta.trades",
        f"<= {RSS_GROWTH_LIMIT}x",
        lambda x: x <= RSS_GROWTH_LIMIT,
    ),
    Target(
        15,
        "DuckDB: --force rerun of a loaded trades file / its first load (file seconds)",
        "duckdb_force_vs_first_load",
        "<= 1.0",
        lambda x: x <= 1.0,
    ),
)


def targets(values: dict[str, float | None], sizes: dict[str, int]) -> list[dict[str, Any]]:
    """Each target with its measured value; `met` is None when not measured, or measured on
    fewer rows than the target is stated for (`below_size`)."""
    out = []
    for target in TARGETS:
        value = values.get(target.ratio)
        below = bool(target.size) and sizes[target.size] < target.rows
        entry = {
            "issue": target.issue,
            "claim": target.claim,
            "ratio": target.ratio,
            "goal": target.goal,
            "value": value,
            "met": None if value is None or below else target.met(value),
        }
        if below:
            entry["below_size"] = target.rows
        out.append(entry)
    return out
