"""The `histetl` command line: thin commands over the library.

Each command parses its options, calls one library function and prints its report. A
`HistetlError` becomes a one-line message (no traceback) and its exit code:
0 ok, 1 failed, 2 usage or configuration error, 3 finished with quarantined rows when
--fail-on-quarantine is set.

Start-up stays close to the interpreter's own: these modules import click and histetl's
small modules only (no loguru, no asyncio), and each command imports the stages it runs, and
configures logging, when it runs: `histetl --help` and `histetl COMMAND --help` load neither.
"""

from __future__ import annotations

import atexit
import gc

import click

from histetl import __version__
from histetl.cli import database, generate, lake, load, read
from histetl.cli.common import LOGGING


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="histetl")
@click.option("-v", "--verbose", is_flag=True, help="Debug detail on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--log-json", is_flag=True, help="Logs as JSON lines (for log shippers).")
@click.pass_context
def main(ctx: click.Context, verbose: bool, quiet: bool, log_json: bool) -> None:
    """histetl: load Databento historical data into DuckDB or TimescaleDB, validated and
    deduplicated."""
    # Logging is configured by the command when it runs (`handle_errors`), not here: a
    # command's --help stops before, and then loguru is never imported.
    ctx.meta[LOGGING] = {"verbose": verbose, "quiet": quiet, "json_logs": log_json}
    # At exit the interpreter's collections walk every object the stages' imports made
    # (Polars, Arrow, numpy), a few tenths of a second of a run, to free what the OS frees
    # anyway: freeze them first. The commands close their files and connections themselves.
    atexit.unregister(gc.freeze)  # once, however often main() runs in one process
    atexit.register(gc.freeze)


for command in (
    load.replay,
    load.run_command,
    load.jobs_command,
    load.demo,
    database.db,
    database.status,
    lake.lake,
    read.query_command,
    read.verify_command,
    read.resample_command,
    read.quarantine,
    read.report_command,
    generate.synth,
):
    main.add_command(command)
