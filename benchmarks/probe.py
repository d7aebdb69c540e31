"""One measured operation in a fresh process: `python -m benchmarks.probe OP ARGS...`.

Prints one JSON line: `seconds` (the operation only: imports happen before the clock starts)
and `rows`. The parent (`benchmarks.measure.probe`) adds the process wall time and peak RSS.
Each operation imports only what it needs, so a baseline's process carries no histetl imports.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

Result = dict[str, Any]


def _timed(fn: Callable[[], Result]) -> Result:
    started = time.perf_counter()
    result = fn()
    result["seconds"] = time.perf_counter() - started
    return result


def decode(path: str) -> Result:
    """histetl: DBN -> Arrow record batches with the symbol column (decode + map)."""
    from histetl.decode import DbnFile
    from histetl.symbology import SymbolMap

    def run() -> Result:
        rows = 0
        with DbnFile(path) as dbn:
            symbols = SymbolMap.from_metadata(dbn.metadata, path)
            for batch in dbn.batches():
                symbols.resolve(batch.column("instrument_id"), batch.column(dbn.spec.index_ts))
                rows += batch.num_rows
        return {"rows": rows}

    return _timed(run)


def to_df(path: str, price_type: str) -> Result:
    from databento import DBNStore

    def run() -> Result:
        frame = DBNStore.from_file(path).to_df(price_type=price_type, map_symbols=True)
        return {"rows": len(frame)}

    return _timed(run)


def to_ndarray(path: str) -> Result:
    from databento import DBNStore

    return _timed(lambda: {"rows": len(DBNStore.from_file(path).to_ndarray())})


def zstd(path: str) -> Result:
    """zstd decompression alone, streamed in chunks the size of histetl's batches."""
    import zstandard

    def run() -> Result:
        size = 0
        with open(path, "rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            while chunk := reader.read(4 << 20):
                size += len(chunk)
        return {"rows": 0, "bytes": size}

    return _timed(run)


def validate(path: str, limit: str) -> Result:
    """Throughput of the full rule set: decoded frames in memory, only `split` is timed."""
    import polars as pl

    from histetl.decode import DbnFile
    from histetl.schemas import SYMBOL_COLUMN
    from histetl.symbology import SymbolMap
    from histetl.validate import RuleBook

    frames: list[pl.DataFrame] = []
    with DbnFile(path) as dbn:
        meta, spec = dbn.metadata, dbn.spec
        symbols = SymbolMap.from_metadata(meta, path)
        rows = 0
        for batch in dbn.batches():
            if rows >= int(limit):
                break
            symbol = symbols.resolve(batch.column("instrument_id"), batch.column(spec.index_ts))
            frame = pl.from_arrow(batch.append_column(SYMBOL_COLUMN, symbol))
            assert isinstance(frame, pl.DataFrame)
            frames.append(frame.head(int(limit) - rows))
            rows += frames[-1].height
        rules = RuleBook.load().for_file(spec, dbn.dataset, meta.start, meta.end)

    def run() -> Result:
        ordinal = invalid = 0
        for frame in frames:
            split = rules.split(frame, first_ordinal=ordinal)
            ordinal += frame.height
            invalid += split.invalid.height
        return {"rows": ordinal, "invalid": invalid, "rules": len(rules.rules)}

    return _timed(run)


def copy_load(path: str, uri: str) -> Result:
    from benchmarks.loaders import copy_load as load

    return _timed(lambda: {"rows": load(Path(path), uri)})


def rowwise_load(path: str, uri: str) -> Result:
    from benchmarks.loaders import rowwise_load as load

    return _timed(lambda: {"rows": load(Path(path), uri)})


OPS: dict[str, Callable[..., Result]] = {
    "decode": decode,
    "to_df": to_df,
    "to_ndarray": to_ndarray,
    "zstd": zstd,
    "validate": validate,
    "copy_load": copy_load,
    "rowwise_load": rowwise_load,
}


def main(argv: list[str]) -> None:
    warnings.simplefilter("ignore")  # databento's pandas deprecation warning
    op, *args = argv
    print(json.dumps(OPS[op](*args)))


if __name__ == "__main__":
    main(sys.argv[1:])
