"""Every built-in rule has a valid and an invalid table: a clean generated row passes every
rule, and one targeted change makes exactly the rule under test fail."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from histetl.schemas import SUPPORTED_SCHEMAS, table_spec
from histetl.synth import SynthSpec, write_dbn
from histetl.validate import RuleBook, RuleSet
from tests.reference import decode_with_symbols

Change = Callable[[pl.DataFrame], pl.DataFrame]


def _set(**values: object) -> Change:
    def change(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(
            pl.lit(v, dtype=frame.schema[k]).alias(k) for k, v in values.items()
        )

    return change


def _with(**exprs: pl.Expr) -> Change:
    def change(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(e.cast(frame.schema[k]).alias(k) for k, e in exprs.items())

    return change


# rule -> (schema, dataset, change that breaks exactly this rule)
CASES: dict[str, tuple[str, str, Change]] = {
    "ts_event_present": ("status", "GLBX.MDP3", _set(ts_event=None)),
    "index_ts_present": ("definition", "GLBX.MDP3", _set(ts_recv=None)),
    "index_ts_in_file_range": (
        "ohlcv-1m",
        "GLBX.MDP3",
        _with(ts_event=pl.col("ts_event") - dt.timedelta(days=30)),
    ),
    "symbol_present": ("trades", "GLBX.MDP3", _set(symbol=None)),
    "ts_recv_not_before_ts_event": (
        "trades",
        "GLBX.MDP3",
        _with(ts_event=pl.col("ts_recv") + dt.timedelta(microseconds=1), flags=pl.lit(0)),
    ),
    "bar_prices_present": ("ohlcv-1m", "GLBX.MDP3", _set(open=None)),
    "high_ge_open_close_low": (
        "ohlcv-1h",
        "GLBX.MDP3",
        _with(close=pl.col("high") + Decimal("0.25")),
    ),
    "low_le_open_close": (
        "ohlcv-1d",
        "GLBX.MDP3",
        _with(low=pl.col("high"), open=pl.col("high"), close=pl.col("high") - Decimal(1)),
    ),
    "price_present": ("trades", "GLBX.MDP3", _set(price=None)),
    "size_positive": ("tbbo", "GLBX.MDP3", _set(size=0)),
    "event_price_present": ("mbp-1", "GLBX.MDP3", _set(action="A", side="B", price=None)),
    "event_size_positive": ("mbp-10", "GLBX.MDP3", _set(action="C", side="A", size=0)),
    "price_positive": ("trades", "XNAS.ITCH", _set(price=Decimal("-1.5"))),
    "price_positive_outright": ("trades", "GLBX.MDP3", _set(price=Decimal("-1.5"))),
    "quote_not_crossed": (
        "bbo-1s",
        "GLBX.MDP3",
        _with(bid_px_00=pl.col("ask_px_00") + Decimal("0.25")),
    ),
    "quote_not_locked": ("mbp-1", "GLBX.MDP3", _with(bid_px_00=pl.col("ask_px_00"))),
    "quote_side_priced_when_sized": ("tbbo", "GLBX.MDP3", _set(ask_px_00=None, ask_sz_00=3)),
    "raw_symbol_present": ("definition", "GLBX.MDP3", _set(raw_symbol="")),
    "expiration_after_activation": (
        "definition",
        "GLBX.MDP3",
        _with(expiration=pl.col("activation") - dt.timedelta(days=1)),
    ),
    "min_price_increment_positive": (
        "definition",
        "GLBX.MDP3",
        _set(min_price_increment=Decimal(0)),
    ),
    "stat_type_known": ("statistics", "GLBX.MDP3", _set(stat_type=999)),
    "stat_price_present": ("statistics", "GLBX.MDP3", _set(stat_type=3, price=None)),
    "stat_quantity_present": ("statistics", "GLBX.MDP3", _set(stat_type=9, quantity=None)),
    "stat_quantity_present_with_price": (
        "statistics",
        "GLBX.MDP3",
        _set(stat_type=13, quantity=None),
    ),
}
_EMPTY_BOOK = _set(bid_px_00=None, ask_px_00=None, bid_sz_00=0, ask_sz_00=0)
# Valid shapes of real Databento records that no error rule may reject:
# name -> (schema, dataset, change of a clean row, warn rules it may count)
VALID_SHAPES: dict[str, tuple[str, str, Change, set[str]]] = {
    # interval records of a session without a trade yet: ts_event undefined, no last sale
    "bbo_1s_no_last_trade": (
        "bbo-1s",
        "GLBX.MDP3",
        _set(ts_event=None, price=None, size=0, side="N"),
        set(),
    ),
    "cbbo_1m_no_last_trade": (
        "cbbo-1m",
        "OPRA.PILLAR",
        _set(ts_event=None, price=None, size=0, side="N"),
        set(),
    ),
    # the first interval of a file: its last trade happened before the file's start
    "bbo_1m_last_trade_before_file_start": (
        "bbo-1m",
        "GLBX.MDP3",
        _with(ts_event=pl.col("ts_recv") - dt.timedelta(days=6)),
        set(),
    ),
    # a two-sided BBO change (options venues): side N, no price, size 0
    "mbp_1_sideless_add": (
        "mbp-1",
        "OPRA.PILLAR",
        _set(action="A", side="N", price=None, size=0),
        set(),
    ),
    "cmbp_1_sideless_add": (
        "cmbp-1",
        "OPRA.PILLAR",
        _set(action="A", side="N", price=None, size=0),
        set(),
    ),
    "mbp_10_sideless_modify": (
        "mbp-10",
        "GLBX.MDP3",
        _set(action="M", side="N", price=None, size=0),
        set(),
    ),
    # a clear of the book and a None action carry no price or size
    "mbp_1_clear": (
        "mbp-1",
        "GLBX.MDP3",
        lambda f: _EMPTY_BOOK(_set(action="R", side="N", price=None, size=0)(f)),
        set(),
    ),
    "mbp_10_none_action": (
        "mbp-10",
        "GLBX.MDP3",
        _set(action="N", side="N", price=None, size=0),
        set(),
    ),
    "mbo_clear": ("mbo", "GLBX.MDP3", _set(action="R", side="N", price=None, size=0), set()),
    # no symbology mapping: loads with symbol NULL, counted
    "statistics_without_symbol": ("statistics", "GLBX.MDP3", _set(symbol=None), {"symbol_present"}),
    # quantity-only statistics and the removal of a statistic
    "statistics_open_interest": (
        "statistics",
        "GLBX.MDP3",
        _set(stat_type=9, price=None, quantity=51_000),
        set(),
    ),
    "statistics_mwcb_level": ("statistics", "GLBX.MDP3", _set(stat_type=21), set()),
    "statistics_delete": ("statistics", "GLBX.MDP3", _set(update_action=2, price=None), set()),
    "statistics_new_stat_type": (
        "statistics",
        "GLBX.MDP3",
        _set(stat_type=27),
        {"stat_type_known"},
    ),
    # equities: no expiration or activation; a variable tick table
    "definition_equity": (
        "definition",
        "XNAS.ITCH",
        _set(expiration=None, activation=None),
        set(),
    ),
    "definition_zero_tick": (
        "definition",
        "GLBX.MDP3",
        _set(min_price_increment=Decimal(0)),
        {"min_price_increment_positive"},
    ),
    # crossed top of book (implied prices, auctions, consolidated venues)
    "mbp_1_crossed": (
        "mbp-1",
        "GLBX.MDP3",
        _with(bid_px_00=pl.col("ask_px_00") + Decimal("0.25")),
        {"quote_not_crossed"},
    ),
    "tcbbo_crossed": (
        "tcbbo",
        "EQUS.SUMMARY",
        _with(bid_px_00=pl.col("ask_px_00") + Decimal("0.01")),
        {"quote_not_crossed"},
    ),
    # a spread on a futures venue trades at or below zero
    "trades_negative_spread": (
        "trades",
        "IFEU.IMPACT",
        _set(price=Decimal("-0.5"), symbol="BRN FMH0024-BRN FMJ0024"),
        set(),
    ),
}
SMALL = {"ohlcv-1h": 20, "ohlcv-1d": 2}
_EQUITY_DATASETS = ("XNAS.ITCH", "EQUS.SUMMARY", "OPRA.PILLAR")


@pytest.fixture(scope="module")
def clean_rows(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], pl.DataFrame]:
    """One clean decoded row per (schema, dataset) used by the cases."""
    rows = {}
    wanted = {(s, d) for s, d, _ in CASES.values()} | {
        (s, d) for s, d, _, _ in VALID_SHAPES.values()
    }
    for schema, dataset in wanted:
        path = tmp_path_factory.mktemp("rules") / f"{schema}.dbn"
        symbols = ("AAPL",) if dataset in _EQUITY_DATASETS else ("ES.c.0",)
        stype = "raw_symbol" if dataset in _EQUITY_DATASETS else "continuous"
        write_dbn(
            SynthSpec(
                schema=schema,
                records=SMALL.get(schema, 50),
                dataset=dataset,
                symbols=symbols,
                stype_in=stype,
                days=3,
                seed=1,
            ),
            path,
        )
        table, _ = decode_with_symbols(path)
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        if "bid_px_00" in frame.columns:  # a row with both sides quoted
            frame = frame.filter(
                pl.col("bid_px_00").is_not_null() & pl.col("ask_px_00").is_not_null()
            )
        if schema == "statistics":
            frame = frame.filter(pl.col("stat_type") == 1)
        rows[(schema, dataset)] = frame.head(1)
    return rows


def _ruleset(schema: str, dataset: str, frame: pl.DataFrame) -> RuleSet:
    spec = table_spec(schema)
    ts = frame[spec.index_ts].cast(pl.Int64)[0]
    day = 86_400 * 10**9
    return RuleBook.load().for_file(spec, dataset, ts - 5 * day, ts + 5 * day)


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_passes_a_clean_row_and_fails_its_broken_twin(
    rule: str, clean_rows: dict[tuple[str, str], pl.DataFrame]
) -> None:
    schema, dataset, change = CASES[rule]
    clean = clean_rows[(schema, dataset)]
    assert clean.height == 1
    rules = _ruleset(schema, dataset, clean)
    assert rule in {r.name for r in rules.rules}
    good = rules.split(clean, 0)
    assert good.counts == {}
    assert good.valid.height == 1
    bad = rules.split(change(clean), 0)
    assert bad.counts == {rule: 1}
    severity = next(r.severity for r in rules.rules if r.name == rule)
    if severity == "error":
        assert bad.invalid.height == 1
        assert bad.valid.height == 0
        assert bad.invalid["rules_broken"].to_list() == [[rule]]
        assert bad.invalid["ordinal"].to_list() == [0]
    else:  # warnings load and are counted
        assert bad.invalid.height == 0
        assert bad.valid.height == 1


@pytest.mark.parametrize("shape", sorted(VALID_SHAPES))
def test_valid_real_record_shape_is_never_quarantined(
    shape: str, clean_rows: dict[tuple[str, str], pl.DataFrame]
) -> None:
    schema, dataset, change, warns = VALID_SHAPES[shape]
    clean = clean_rows[(schema, dataset)]
    assert clean.height == 1
    rules = _ruleset(schema, dataset, clean)
    assert rules.split(clean, 0).counts == {}
    split = rules.split(change(clean), 0)
    assert (split.valid.height, split.invalid.height) == (1, 0)
    assert split.counts == dict.fromkeys(warns, 1)


def test_every_builtin_rule_has_a_case_and_compiles_for_its_schemas() -> None:
    book = RuleBook.load()
    names = set()
    for schema in SUPPORTED_SCHEMAS:
        spec = table_spec(schema)
        for dataset in ("GLBX.MDP3", "XNAS.ITCH"):
            for rule in book.for_file(spec, dataset, 0, None).rules:
                names.add(rule.name)
                book.check(rule, schema)  # raises ConfigError if it does not evaluate
    assert names == set(CASES)


def test_a_rule_that_is_null_for_a_row_does_not_apply() -> None:
    spec = table_spec("mbp-1")
    rules = RuleBook.load().for_file(spec, "GLBX.MDP3", None, None)
    frame = pl.from_arrow(spec.arrow_schema.empty_table())
    assert isinstance(frame, pl.DataFrame)
    assert rules.split(frame, 0).counts == {}


def test_rules_are_read_from_yaml_data(tmp_path: Path) -> None:
    user = tmp_path / "r.yaml"
    user.write_text("rules:\n  trades:\n    - {name: tiny, expr: 'size < 2', severity: warn}\n")
    names = {
        r.name
        for r in RuleBook.load([user]).for_file(table_spec("trades"), "GLBX.MDP3", 0, None).rules
    }
    assert "tiny" in names
    assert "price_present" in names


def test_example_rules_and_mapping_configs_load() -> None:
    from histetl.mapping import Mapping

    configs = Path(__file__).resolve().parents[1] / "configs"
    book = RuleBook.load([configs / "rules.example.yaml"])
    names = {r.name for r in book.for_file(table_spec("trades"), "GLBX.MDP3", 0, None).rules}
    assert "size_plausible" in names
    mapping = Mapping.load(configs / "mapping.example.yaml")
    assert mapping.for_spec(table_spec("trades")).table == "es_trades"
