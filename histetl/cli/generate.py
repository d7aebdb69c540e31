"""`histetl synth`: realistic synthetic DBN files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from histetl.cli.common import handle_errors
from histetl.dbn import SUPPORTED_SCHEMAS
from histetl.errors import ConfigError


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--schema",
    type=click.Choice(SUPPORTED_SCHEMAS),
    required=True,
    help="DBN schema of the records to generate.",
)
@click.option(
    "--records",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="How many records (bars: at most one per instrument and interval).",
)
@click.option(
    "--symbols", default="ES.c.0", show_default=True, help="Comma-separated requested symbols."
)
@click.option(
    "--stype-in",
    type=click.Choice(["continuous", "raw_symbol", "parent"]),
    default="continuous",
    show_default=True,
    help="How the symbols were requested; decides the metadata's symbol mappings.",
)
@click.option(
    "--dataset",
    default="GLBX.MDP3",
    show_default=True,
    help="Dataset code written into the metadata (GLBX.MDP3, XNAS.ITCH, ...).",
)
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%d"]),
    default="2023-12-14",
    show_default=True,
    help="First UTC day of the data.",
)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Number of UTC days the records spread over.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed: the same seed gives the same bytes.",
)
@click.option(
    "--dbn-version",
    type=click.IntRange(1, 3),
    default=3,
    show_default=True,
    help="DBN version of the file.",
)
@click.option(
    "--shape",
    "shapes",
    multiple=True,
    metavar="NAME=COUNT",
    help="Rows of an unusual but valid real-data shape (repeatable): no_last_trade, "
    "sideless_book_updates, book_clears.",
)
@click.option(
    "--no-symbology", is_flag=True, help="Write no symbology mappings (records have no symbol)."
)
@handle_errors
def synth(
    path: Path,
    schema: str,
    records: int,
    symbols: str,
    stype_in: str,
    dataset: str,
    start: dt.datetime,
    days: int,
    seed: int,
    dbn_version: int,
    shapes: tuple[str, ...],
    no_symbology: bool,
) -> None:
    """Write a realistic synthetic DBN file (.dbn, or zstd with .dbn.zst)."""
    from histetl.outputs import check_output
    from histetl.synth import Shapes, SynthSpec, write_dbn  # generator: only when used

    known = Shapes().counts()
    counts: dict[str, int] = {}
    for item in shapes:
        name, _, count = item.partition("=")
        if name not in known or not count.isdigit():
            raise ConfigError(
                f"--shape {item!r}: expected NAME=COUNT",
                where="histetl synth",
                hint=f"names: {', '.join(known)}",
            )
        counts[name] = int(count)
    spec = SynthSpec(
        schema=schema,
        records=records,
        dataset=dataset,
        symbols=tuple(s.strip() for s in symbols.split(",") if s.strip()),
        stype_in=stype_in,
        start=start.date(),
        days=days,
        seed=seed,
        version=dbn_version,
        shapes=Shapes(**counts),
        symbology=not no_symbology,
    )
    check_output(path, str(path))
    try:
        result = write_dbn(spec, path)  # OutputError: one line, no file left
    except ValueError as exc:
        raise ConfigError(str(exc), where="histetl synth") from exc
    click.echo(f"wrote {result.records} {schema} records to {result.path}")
