"""The declarative column mapping (YAML: derive, cast, drop, rename) compiled to Polars.

By default a table keeps the canonical columns (DBN field names plus `symbol`). A mapping file
changes that per table without code:

    tables:
      trades:
        derive: {notional: "price * size"}   # SQL expressions over canonical columns
        cast: {size: Int64}
        drop: [ts_in_delta]
        rename: {price: px}

Steps run in that order. Key columns (index timestamp, instrument_id, record_hash) may be
renamed but not dropped or cast. The target table's schema is the mapping applied to an empty
canonical table, so it always matches what is loaded.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from histetl.config import load_model
from histetl.dbn import SUPPORTED_SCHEMAS
from histetl.errors import ConfigError, HistetlError
from histetl.schemas import TableSpec, table_spec

_DTYPES: dict[str, pl.DataType] = {
    "Int8": pl.Int8(), "Int16": pl.Int16(), "Int32": pl.Int32(), "Int64": pl.Int64(),
    "UInt8": pl.UInt8(), "UInt16": pl.UInt16(), "UInt32": pl.UInt32(), "UInt64": pl.UInt64(),
    "Float32": pl.Float32(), "Float64": pl.Float64(), "String": pl.String(),
    "Boolean": pl.Boolean(),
}  # fmt: skip
_DECIMAL = re.compile(r"^Decimal\((\d+),\s*(\d+)\)$")


class TableMappingModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    derive: dict[str, str] = {}
    cast: dict[str, str] = {}
    drop: list[str] = []
    rename: dict[str, str] = {}
    table: str | None = None  # target table name (default: the schema with - as _)


class MappingModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tables: dict[str, TableMappingModel] = {}


class MappingError(HistetlError):
    """A mapping that compiled but fails on a file's data; that file fails, the others load."""


def _dtype(name: str, where: str) -> pl.DataType:
    if name in _DTYPES:
        return _DTYPES[name]
    match = _DECIMAL.match(name)
    if match:
        return pl.Decimal(int(match[1]), int(match[2]))
    raise ConfigError(
        f"{where}: unknown type {name!r}", hint=f"types: {', '.join(_DTYPES)}, Decimal(P,S)"
    )


def to_arrow(frame: pl.DataFrame) -> pa.Table:
    """Polars to Arrow with classic types (string, not string_view) that every driver reads."""
    return frame.to_arrow(compat_level=pl.CompatLevel.oldest())


class TableMapping:
    """The compiled mapping of one canonical table."""

    def __init__(
        self, spec: TableSpec, model: TableMappingModel | None = None, source: str = "mapping"
    ) -> None:
        model = model or TableMappingModel()
        self.spec = spec
        self.table = model.table or spec.table
        where = f"{source}: tables.{spec.schema}"
        for name in [*model.drop, *model.cast]:
            if name in spec.key:
                raise ConfigError(
                    f"{where}: key column {name} cannot be dropped or cast",
                    hint="rename it instead",
                )
        self._where = where
        self._derive_exprs = dict(model.derive)
        self._derive = [pl.sql_expr(expr).alias(name) for name, expr in model.derive.items()]
        self._cast = {name: _dtype(t, f"{where}.cast.{name}") for name, t in model.cast.items()}
        self._drop = list(model.drop)
        self._rename = dict(model.rename)
        self.key = tuple(self._rename.get(c, c) for c in spec.key)
        self.identity = not (self._derive or self._cast or self._drop or self._rename)
        self.arrow_schema: pa.Schema = spec.arrow_schema
        if self.identity:
            return
        try:
            empty = pl.from_arrow(spec.arrow_schema.empty_table())
            assert isinstance(empty, pl.DataFrame)
            self.arrow_schema = to_arrow(self._apply(empty)).schema
        except Exception as exc:  # polars raises several error types for bad expressions
            raise ConfigError(
                f"{where}: {str(exc).splitlines()[0]}",
                hint=f"columns: {', '.join(spec.column_names)}",
            ) from exc

    def apply(self, frame: pl.DataFrame, source: str = "") -> pl.DataFrame:
        """The mapping applied to one batch of `source`. A derive or cast that fails on this
        data (an overflowing cast, an expression that raises) is a `MappingError` naming the
        mapping key and the file."""
        try:
            return self._apply(frame)
        except pl.exceptions.PolarsError as exc:
            raise self._failure(frame, exc, source) from None

    def _failure(self, frame: pl.DataFrame, exc: Exception, source: str) -> MappingError:
        """Which step failed: each derive, then each cast, tried alone."""
        key, error = "", exc
        for name, expr in zip(self._derive_exprs, self._derive, strict=True):
            try:
                frame.select(expr)
            except pl.exceptions.PolarsError as one:
                key = f"derive.{name} ({self._derive_exprs[name]!r})"
                error = one
                break
        else:
            derived = frame.with_columns(self._derive) if self._derive else frame
            for name, dtype in self._cast.items():
                try:
                    derived.select(pl.col(name).cast(dtype))
                except pl.exceptions.PolarsError as one:
                    key, error = f"cast.{name} ({dtype})", one
                    break
        detail = (str(error).splitlines() or [type(error).__name__])[0][:300]
        return MappingError(
            f"{self._where}{'.' + key if key else ''} fails on this file's data: {detail}",
            where=source or None,
            hint="nothing from this file was loaded; fix the mapping and replay the file",
        )

    def _apply(self, frame: pl.DataFrame) -> pl.DataFrame:
        if self._derive:
            frame = frame.with_columns(self._derive)
        if self._cast:
            frame = frame.cast(self._cast)  # type: ignore[arg-type]
        if self._drop:
            frame = frame.drop(self._drop)
        if self._rename:
            frame = frame.rename(self._rename)
        return frame


class Mapping:
    """Mappings for every schema (identity where the file says nothing)."""

    def __init__(self, model: MappingModel | None = None, source: str = "mapping") -> None:
        self._model = model or MappingModel()
        self._source = source
        for schema in self._model.tables:
            if schema not in SUPPORTED_SCHEMAS:
                raise ConfigError(
                    f"tables.{schema}: unknown schema",
                    where=source,
                    hint=f"schemas: {', '.join(SUPPORTED_SCHEMAS)}",
                )
        self._compiled: dict[str, TableMapping] = {}
        for schema in self._model.tables:  # compile now: a bad mapping fails before any work
            self.for_spec(table_spec(schema))

    @classmethod
    def load(cls, path: Path | None) -> Mapping:
        if path is None:
            return cls()
        return cls(load_model(MappingModel, path), str(path))

    def for_spec(self, spec: TableSpec) -> TableMapping:
        if spec.schema not in self._compiled:
            self._compiled[spec.schema] = TableMapping(
                spec, self._model.tables.get(spec.schema), self._source
            )
        return self._compiled[spec.schema]
