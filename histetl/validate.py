"""Validation: named rules as data, compiled once to Polars expressions, applied per batch.

`RuleBook` holds every rule (built-in `histetl/data/rules.yaml` plus user files); `RuleSet` is the
set that applies to one file (its schema and dataset) and `RuleSet.split` divides a batch into
rows to load and rows to quarantine, with the names of the rules each bad row broke.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field

from histetl.config import load_model, validate_model
from histetl.dbn import SUPPORTED_SCHEMAS
from histetl.errors import ConfigError, HistetlError, first_line
from histetl.schemas import TableSpec, table_spec

RULES_COLUMN = "rules_broken"
ORDINAL_COLUMN = "ordinal"
SOURCE_COLUMN = "source_file"
INDEX_TS = "_index_ts"
FILE_START = "_file_start"
FILE_END = "_file_end"
_TS = pl.Datetime("ns", "UTC")


class RuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    expr: str
    severity: Literal["error", "warn"] = "error"
    datasets: list[str] | None = None
    exclude_datasets: list[str] = []


class BuiltinRulesModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    groups: dict[str, list[RuleModel]]
    schemas: dict[str, list[str]]


class UserRulesModel(BaseModel):
    """A user's rules file: extra rules per schema, rules to disable, severities to change."""

    model_config = ConfigDict(extra="forbid")
    rules: dict[str, list[RuleModel]] = {}
    disable: list[str] = []
    severity: dict[str, Literal["error", "warn"]] = {}


@dataclass(frozen=True)
class Rule:
    name: str
    expr: str
    severity: str
    datasets: frozenset[str] | None
    exclude_datasets: frozenset[str]

    @classmethod
    def from_model(cls, model: RuleModel) -> Rule:
        datasets = frozenset(model.datasets) if model.datasets is not None else None
        return cls(
            model.name, model.expr, model.severity, datasets, frozenset(model.exclude_datasets)
        )

    def applies_to(self, dataset: str) -> bool:
        if dataset in self.exclude_datasets:
            return False
        return self.datasets is None or dataset in self.datasets

    @cached_property
    def compiled(self) -> pl.Expr:
        return pl.sql_expr(self.expr)


def _probe_frame(spec: TableSpec) -> pl.DataFrame:
    frame = pl.from_arrow(spec.arrow_schema.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.with_columns(
        pl.col(spec.index_ts).alias(INDEX_TS),
        pl.lit(None, _TS).alias(FILE_START),
        pl.lit(None, _TS).alias(FILE_END),
    )


def _check_rule(rule: Rule, schema: str, source: str) -> None:
    """Compile against an empty table of the schema: unknown columns, syntax, non-boolean."""
    try:
        dtype = _probe_frame(table_spec(schema)).select(rule.compiled).to_series().dtype
    except Exception as exc:  # polars raises several error types for bad SQL
        raise ConfigError(
            f"rule {rule.name} ({schema}): cannot evaluate {rule.expr!r}: {first_line(exc)}",
            where=source,
            hint=f"use columns of the {schema} table: {', '.join(table_spec(schema).column_names)}",
        ) from exc
    if dtype != pl.Boolean:
        raise ConfigError(
            f"rule {rule.name} ({schema}): {rule.expr!r} is {dtype}, not a boolean",
            where=source,
            hint="a rule must be TRUE for a good row",
        )


class RuleBook:
    """All rules per schema, after user files were applied."""

    def __init__(self, rules: dict[str, list[Rule]]) -> None:
        self._rules = rules

    @classmethod
    def load(cls, user_files: list[Path] | tuple[Path, ...] = ()) -> RuleBook:
        text = resources.files("histetl").joinpath("data/rules.yaml").read_text("utf-8")
        source = "histetl/data/rules.yaml"
        builtin = validate_model(BuiltinRulesModel, yaml.safe_load(text), source)
        rules: dict[str, list[Rule]] = {}
        for schema, groups in builtin.schemas.items():
            rules[schema] = [Rule.from_model(m) for group in groups for m in builtin.groups[group]]
        user_rules: dict[tuple[str, str], str] = {}
        for path in user_files:
            user = load_model(UserRulesModel, path)
            rules = cls._apply_user(rules, user, str(path))
            user_rules.update({(s, r.name): str(path) for s, ms in user.rules.items() for r in ms})
        # The built-in rules are checked by the test suite; a user's are checked here, so a
        # bad one fails before any work.
        for schema, schema_rules in rules.items():
            for rule in schema_rules:
                if (schema, rule.name) in user_rules:
                    _check_rule(rule, schema, user_rules[(schema, rule.name)])
        return cls(rules)

    @staticmethod
    def _apply_user(
        rules: dict[str, list[Rule]], user: UserRulesModel, source: str
    ) -> dict[str, list[Rule]]:
        known: set[str] = {r.name for rs in rules.values() for r in rs}
        for schema, models in user.rules.items():
            if schema not in SUPPORTED_SCHEMAS:
                raise ConfigError(
                    f"rules.{schema}: unknown schema",
                    where=source,
                    hint=f"schemas: {', '.join(SUPPORTED_SCHEMAS)}",
                )
            extra = [Rule.from_model(m) for m in models]
            names = {r.name for r in extra}
            rules[schema] = [r for r in rules.get(schema, []) if r.name not in names] + extra
            known |= names
        for key, listed in (("disable", user.disable), ("severity", list(user.severity))):
            for name in listed:
                if name not in known:
                    raise ConfigError(
                        f"{key}: unknown rule {name!r}",
                        where=source,
                        hint=f"known rules: {', '.join(sorted(known))}",
                    )
        out: dict[str, list[Rule]] = {}
        for schema, schema_rules in rules.items():
            kept = [r for r in schema_rules if r.name not in user.disable]
            out[schema] = [
                Rule(
                    r.name,
                    r.expr,
                    user.severity.get(r.name, r.severity),
                    r.datasets,
                    r.exclude_datasets,
                )
                for r in kept
            ]
        return out

    @staticmethod
    def check(rule: Rule, schema: str, source: str = "rules") -> None:
        """Raise ConfigError unless `rule` evaluates to a boolean on the schema's table."""
        _check_rule(rule, schema, source)

    def for_file(
        self, spec: TableSpec, dataset: str, start_ns: int | None, end_ns: int | None
    ) -> RuleSet:
        rules = tuple(r for r in self._rules.get(spec.schema, []) if r.applies_to(dataset))
        return RuleSet(spec, rules, start_ns, end_ns)


@dataclass
class Split:
    valid: pl.DataFrame
    invalid: pl.DataFrame  # the original columns plus rules_broken and ordinal
    counts: dict[str, int]  # rule -> rows that broke it (error and warn rules)


class RuleSet:
    """The rules for one file; `split` is vectorized over a whole batch."""

    def __init__(
        self, spec: TableSpec, rules: tuple[Rule, ...], start_ns: int | None, end_ns: int | None
    ) -> None:
        self.spec = spec
        self.rules = rules
        self._span = (start_ns, end_ns)
        self.errors = [r.name for r in rules if r.severity == "error"]
        self._helpers = [
            pl.col(spec.index_ts).alias(INDEX_TS),
            pl.lit(start_ns, pl.Int64).cast(_TS).alias(FILE_START),
            pl.lit(end_ns, pl.Int64).cast(_TS).alias(FILE_END),
        ]
        self._checks = [r.compiled.fill_null(True).alias(r.name) for r in rules]
        self._failures = [(~check).sum() for check in self._checks]

    def split(self, frame: pl.DataFrame, first_ordinal: int, source: str = "") -> Split:
        """Valid rows, invalid rows with the rules they broke, and per-rule counts. A rule that
        raises on this data (not just breaks) is a `HistetlError` naming the rule and `source`
        (the file or table), found by evaluating the rules one by one."""
        try:
            return self._split(frame, first_ordinal)
        except pl.exceptions.PolarsError as exc:
            name, expr, error = "", "", exc
            for rule in self.rules:
                try:
                    RuleSet(self.spec, (rule,), *self._span)._split(frame, first_ordinal)
                except pl.exceptions.PolarsError as one:
                    name, expr, error = rule.name, rule.expr, one
                    break
            detail = first_line(error)
            what = f"rule {name} ({expr!r})" if name else "the rules"
            raise HistetlError(
                f"{what} cannot be evaluated on this data: {detail}",
                where=source or None,
                hint="fix the rule, or disable it (--rules FILE with `disable: [name]`), "
                "then rerun",
            ) from None

    def _split(self, frame: pl.DataFrame, first_ordinal: int) -> Split:
        if not self.rules:
            return Split(frame, frame.clear(), {})
        # One pass for the common case: count each rule's failures; rows are only split
        # when an error rule failed somewhere in the batch.
        failures = frame.lazy().with_columns(self._helpers).select(self._failures).collect()
        counts = {name: int(n) for name, n in failures.row(0, named=True).items() if n}
        bad_errors = [name for name in self.errors if name in counts]
        if not bad_errors:
            return Split(frame, frame.clear(), counts)
        checks = frame.lazy().with_columns(self._helpers).select(self._checks).collect()
        mask = checks.select(pl.any_horizontal([~pl.col(n) for n in bad_errors])).to_series()
        broken = pl.concat_list([pl.when(~pl.col(n)).then(pl.lit(n)) for n in counts])
        reasons = checks.filter(mask).select(broken.list.drop_nulls().alias(RULES_COLUMN))
        ordinals = pl.int_range(
            first_ordinal, first_ordinal + frame.height, dtype=pl.UInt64, eager=True
        ).alias(ORDINAL_COLUMN)
        invalid = pl.concat(
            [frame.filter(mask), reasons, ordinals.filter(mask).to_frame()], how="horizontal"
        )
        return Split(frame.filter(~mask), invalid, counts)
