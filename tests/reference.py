"""Compare histetl's decoded tables with databento's own decoder, value for value."""

from __future__ import annotations

import decimal
import math
from pathlib import Path
from typing import Any

import databento
import databento_dbn
import numpy as np
import pyarrow as pa

from histetl.decode import DbnFile
from histetl.schemas import Column, ColumnKind, TableSpec
from histetl.symbology import SymbolMap

_SCALE = 10**9


def decode_with_symbols(path: Path, batch_size: int = 100_000) -> tuple[pa.Table, TableSpec]:
    with DbnFile(path) as dbn:
        symbols = SymbolMap.from_metadata(dbn.metadata)
        batches = []
        for batch in dbn.batches(batch_size):
            symbol = symbols.resolve(batch.column("instrument_id"), batch.column(dbn.spec.index_ts))
            batches.append(batch.append_column("symbol", symbol))
        table = pa.Table.from_batches(batches) if batches else None
        spec = dbn.spec
    if table is None:
        table = spec.arrow_schema.empty_table()
    return table, spec


def _is_missing(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, decimal.Decimal) and value.is_nan())
    )


def mismatches(path: Path, batch_size: int = 100_000) -> list[str]:
    """Every difference between histetl and `DBNStore.to_df` (fixed and decimal prices)."""
    ours, spec = decode_with_symbols(path, batch_size)
    store = databento.DBNStore.from_bytes(Path(path).read_bytes())
    fixed = store.to_df(price_type="fixed", map_symbols=True, pretty_ts=True).reset_index()
    dec = store.to_df(price_type="decimal", map_symbols=True, pretty_ts=True).reset_index()
    problems: list[str] = []
    if len(fixed) != ours.num_rows:
        return [f"row count {ours.num_rows} != databento {len(fixed)}"]
    for name in fixed.columns:
        if name not in ours.column_names:
            problems.append(f"column {name} missing")
            continue
        mine = ours.column(name).to_pylist()
        column = spec.column(name)
        theirs = fixed[name].tolist()
        for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            if not _same(column, a, b, dec[name].iloc[i]):
                problems.append(f"{name}[{i}]: histetl {a!r} != databento {b!r}")
    return problems


def _same(column: Column, mine: Any, theirs: Any, theirs_decimal: Any) -> bool:
    kind = column.kind
    if kind == ColumnKind.PRICE:
        if mine is None:
            return bool(theirs == databento_dbn.UNDEF_PRICE and _is_missing(theirs_decimal))
        return bool(int(mine * _SCALE) == theirs and mine == theirs_decimal)
    if kind == ColumnKind.TIMESTAMP:
        if mine is None:
            return _is_missing(theirs) or str(theirs) == "NaT"
        return bool(int(theirs.value) == _ns(mine))
    if kind == ColumnKind.STRING:
        return bool(mine == theirs) or (mine is None and _is_missing(theirs))
    if mine is None:
        # NULL only where databento shows a missing value or the field's sentinel: the type's
        # maximum (v1 statistics carry a 32-bit quantity, so its sentinel is 2**31 - 1)
        sentinels = {np.iinfo(column.type.to_pandas_dtype()).max, 2**31 - 1}
        return _is_missing(theirs) or theirs in sentinels
    if _is_missing(theirs):
        return False
    return bool(mine == theirs)


def _ns(value: Any) -> int:
    """pyarrow gives pandas Timestamps for ns timestamps when pandas is installed."""
    return int(value.value) if hasattr(value, "value") else int(value.timestamp() * _SCALE)
