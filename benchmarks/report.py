"""Machine facts, the markdown tables, results/latest.{json,md} and the README block."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.bench import Timing
from benchmarks.measure import ROOT

RESULTS = Path(__file__).resolve().parent / "results"
README_START, README_END = "<!-- bench:latest:start -->", "<!-- bench:latest:end -->"
PACKAGES = (
    "histetl",
    "databento",
    "databento-dbn",
    "polars",
    "pyarrow",
    "pandas",
    "numpy",
    "duckdb",
    "deltalake",
    "adbc-driver-postgresql",
    "psycopg",
    "pydantic",
)
SECTIONS = {
    "startup": "Start-up (whole processes)",
    "decode": "Decode: trades, plain .dbn",
    "zstd": "Decode: trades, .dbn.zst",
    "validate": "Validation throughput (full rule set, in memory)",
    "pg": "PostgreSQL load: trades",
    "duckdb": "DuckDB embedded load",
    "delta": "Delta Lake load (a lake on local disk)",
    "workers": "Parallel replay into PostgreSQL",
    "cluster": "The same files: --workers 1, --workers 2, --cluster local:2 (Dask)",
}


def _first_line(path: str, prefix: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def machine(postgres_version: str | None, load_before: tuple[float, ...]) -> dict[str, Any]:
    mem_kb = _first_line("/proc/meminfo", "MemTotal")
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {
        "cpu": _first_line("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": round(int(mem_kb.split()[0]) / 1024**2, 1) if mem_kb else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": postgres_version,
        "git_commit": f"{commit}{'-dirty' if dirty else ''}" if commit else None,
        # other work on the machine skews absolute times: the 1/5/15-minute load averages
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "packages": versions,
    }


def machine_line(m: dict[str, Any]) -> str:
    pg = f", PostgreSQL {m['postgresql']} (private server, fsync off)" if m["postgresql"] else ""
    return (
        f"{m['cpu']}, {m['cores_usable'] or m['cores']} cores, {m['memory_gb']} GB RAM; "
        f"{m['os']}; Python {m['python']}{pg}; histetl {m['git_commit']}; load average "
        f"{m['load_average_before'][0]} before, {m['load_average_after'][0]} after"
    )


def _fx(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


def _comparison(key: str, r: dict[str, Any], sizes: dict[str, int]) -> str:
    text = {
        "startup.help": f"{_fx(r['help_vs_interpreter'])} the interpreter's start-up",
        "decode.histetl_validate": "reference",
        "decode.to_df_fixed": f"histetl {_faster(r['decode_vs_to_df'])} "
        f"(whole processes: {_faster(r['process_vs_to_df_process'])})",
        "decode.to_df_decimal": f"histetl {_faster(r['decode_vs_to_df_decimal'])}",
        "decode.to_ndarray": f"histetl takes {_fx(_inv(r['decode_vs_to_ndarray']))} its time "
        "(it only copies bytes)",
        "decode.histetl_validate_html": f"{_fx(r['html_overhead'])} the time of the reference "
        f"(whole processes; file seconds: {_fx(r['html_overhead_file_seconds'])})",
        "decode.histetl_arrow": f"{_faster(r['decode_map_only_vs_to_df'])} than to_df(fixed)",
        "zstd.histetl_validate": f"{_fx(r['zst_overhead_vs_decompress'])} the time of "
        "decompression alone (whole processes, against the zstd CLI: "
        f"{_fx(r['zst_process_vs_zstd_cli'])})",
        "pg.histetl_load": f"{_fx(r['load_vs_copy'])} COPY speed "
        f"(whole process: {_fx(r['load_process_vs_copy'])})",
        "pg.server_copy": "the database's limit",
        "pg.psycopg_copy": f"histetl {_faster(r['load_vs_psycopg_copy'])}",
        "pg.histetl_load_rowwise_rows": "reference for the row-wise loader",
        "pg.rowwise": f"histetl {_fx(r['vs_rowwise_loader'])} its rows/s "
        f"({_fx(r['vs_rowwise_loader_same_rows'])} on the same {sizes['rowwise']:,} rows)",
        "pg.histetl_rerun": f"{_pct(r['rerun_vs_first_load'])} of the first load's time "
        f"(whole processes: {_pct(r['rerun_process_vs_first_load_process'])})",
        "pg.histetl_force": f"{_fx(r['force_rerun_vs_first_load'])} the first load's time",
        "pg.histetl_half": f"{_fx(r['half_overlap_vs_first_load'])} the first load's time",
        "duckdb.load": f"to_df(fixed) alone takes {_fx(r['duckdb_load_vs_to_df'])} the time "
        "this load spends on the trades file",
        "duckdb.trades_force": f"{_fx(r['duckdb_force_vs_first_load'])} the first load's time",
        "delta.load": f"{_fx(r['delta_load_vs_duckdb_load'])} the speed of the same load "
        "into DuckDB",
        "delta.trades": f"{_fx(r['delta_trades_vs_duckdb_trades'])} the speed of DuckDB's",
        "delta.trades_force": f"{_fx(r['delta_force_vs_first_load'])} the first load's time",
        "workers.2": f"{_fx(r['workers_2_vs_1'])} the speed of 1 worker",
        "cluster.workers2": f"{_fx(r['cluster_workers2_vs_workers1'])} the speed of --workers 1",
        "cluster.local2": f"{_fx(r['cluster_local2_vs_workers1'])} the speed of --workers 1, "
        f"{_fx(r['cluster_local2_vs_workers2'])} of --workers 2",
        "cluster.small_local2_16": f"{_ms(r['cluster_task_overhead_s'])} per extra file "
        f"(--workers 1: {_ms(r['local_task_overhead_s'])})",
    }
    return text.get(key, "")


def _faster(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{_fx(x)} faster" if x >= 1 else f"{_fx(1 / x)} slower"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1000:.0f} ms"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


def _inv(x: float | None) -> float | None:
    return 1 / x if x else None


def _num(x: float | None, digits: int = 2) -> str:
    return "" if x is None else f"{x:,.{digits}f}"


def _rss(t: Timing) -> str:
    if t.peak_rss_mb is None:
        return "server side" if t.key == "pg.server_copy" else ""
    if t.small_peak_rss_mb is None:
        return f"{t.peak_rss_mb:,.0f}"
    return f"{t.small_peak_rss_mb:,.0f} -> {t.peak_rss_mb:,.0f}"


def main_table(timings: dict[str, Timing], r: dict[str, Any], sizes: dict[str, int]) -> str:
    lines = [
        "| Path | Rows | Seconds | Runs | Rows/s | Process s | Peak RSS MB (1/4 -> full rows) "
        "| Comparison |",
        "|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    section = None
    for key, t in timings.items():
        if t.section != section:
            section = t.section
            lines.append(f"| **{SECTIONS.get(section, section)}** | | | | | | | |")
        rate = _num(t.rows_per_s, 0) if t.rows_per_s else ""
        lines.append(
            f"| {t.label} | {t.rows:,} | {t.seconds:,.2f} | {len(t.runs)} | {rate} | "
            f"{_num(t.process_seconds)} | {_rss(t)} | {_comparison(key, r, sizes)} |"
        )
    return "\n".join(lines)


def targets_table(targets: list[dict[str, Any]]) -> str:
    lines = ["| Issue | Claim | Goal | Measured | Met |", "|--:|---|---|--:|---|"]
    for t in targets:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**NO**")
        if t.get("below_size"):
            met = f"n/a (the target is for {t['below_size']:,} rows)"
        value = "n/a" if t["value"] is None else f"{t['value']:.3g}"
        lines.append(f"| {t['issue']} | {t['claim']} | {t['goal']} | {value} | {met} |")
    return "\n".join(lines)


def markdown(results: dict[str, Any], timings: dict[str, Timing]) -> str:
    sizes = results["sizes"]
    notes = "".join(f"- {n}\n" for n in results["notes"])
    return (
        f"Machine: {machine_line(results['machine'])}  \n"
        f"Run: `{results['command']}` on {results['finished_at'][:16].replace('T', ' ')} UTC, "
        f"{results['seconds_total']:.0f} s.\n\n"
        f"{main_table(timings, results['ratios'], sizes)}\n\n"
        f"{targets_table(results['targets'])}\n\n"
        "Seconds: the operation itself (histetl: the run report's per-file seconds; the "
        "others: timed inside their process after imports), the median of Runs runs (paths "
        "compared with each other run interleaved; a path is not rerun past "
        f"{results['budget_seconds']:g} s). Process s: wall time of the whole "
        "process (interpreter start and imports included). Peak RSS: the process's maximum "
        "resident set, at a quarter of the rows and at all of them. Clean seeded data (no "
        "defects); ratios, not absolute times, are the claim. The row-wise loader runs on "
        f"{sizes['rowwise']:,} rows and is compared as rows/s.\n"
        + (f"\nNotes:\n{notes}" if notes else "")
    )


def write(results: dict[str, Any], timings: dict[str, Timing]) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = markdown(results, timings)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "latest.md").write_text("# histetl benchmarks: latest run\n\n" + text)
    for readme in (Path(__file__).resolve().parent / "README.md", ROOT / "README.md"):
        _update_readme(readme, text)
    return text


def _update_readme(path: Path, text: str) -> None:
    """Replace the block between the bench markers, if the file has them."""
    try:
        content = path.read_text()
    except OSError:
        return
    start, end = content.find(README_START), content.find(README_END)
    if start < 0 or end < start:
        return
    block = f"{README_START}\n{text}\n{README_END}"
    path.write_text(content[:start] + block + content[end + len(README_END) :])


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
