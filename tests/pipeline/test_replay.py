"""The whole pipeline into the embedded DuckDB target: counts reconcile, reruns add nothing,
defects are quarantined exactly, corrupt files leave nothing behind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import psycopg
import pyarrow as pa
import pytest
import zstandard

from histetl.decode import DbnFile
from histetl.errors import ConfigError
from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.report import RunReport
from histetl.source.files import expand_paths
from histetl.synth import SUPPORTED_SCHEMAS as SYNTH_SCHEMAS
from histetl.synth import Defects, SynthSpec, write_dbn
from histetl.targets import read_ledger
from tests.conftest import sample_files, sample_params
from tests.reference import decode_with_symbols, mismatches
from tests.support.pgserver import PgServer, fresh_schema
from tests.support.unprivileged import fill, run_cli, shared_dir, tiny_fs

SCHEMAS = SYNTH_SCHEMAS
HISTETL = [sys.executable, "-m", "histetl.cli"]
SMALL = {"ohlcv-1h": 40, "ohlcv-1d": 3, "ohlcv-eod": 3}


def replay(tmp_path: Path, paths: list[Path], **options: object) -> RunReport:
    opts = ReplayOptions(
        db=f"duckdb:///{tmp_path / 'h.duckdb'}", quarantine_dir=tmp_path / "quarantine", **options
    )  # type: ignore[arg-type]
    return Replayer(opts).run(expand_paths(paths))


def rows(tmp_path: Path, table: str) -> pa.Table:
    with duckdb.connect(str(tmp_path / "h.duckdb"), read_only=True) as con:
        return con.sql(f"SELECT * FROM {table} ORDER BY ALL").to_arrow_table()


def test_replay_of_every_schema_loads_exactly_the_decoded_rows(tmp_path: Path) -> None:
    files = []
    for i, schema in enumerate(SCHEMAS):
        path = tmp_path / "raw" / f"{schema}.dbn.zst"
        path.parent.mkdir(exist_ok=True)
        write_dbn(SynthSpec(schema=schema, records=SMALL.get(schema, 200), days=5, seed=i), path)
        files.append(path)
    report = replay(tmp_path, files)
    assert [f.status for f in report.files] == ["loaded"] * len(SCHEMAS)
    for file in report.files:
        assert file.loaded == file.records > 0
        decoded, spec = decode_with_symbols(Path(file.path))
        stored = rows(tmp_path, spec.table)
        expected = decoded.cast(spec.arrow_schema).sort_by(
            [(c, "ascending") for c in decoded.column_names]
        )
        assert stored.num_rows == decoded.num_rows
        # exact values: prices as decimals, timestamps in nanoseconds, NULL sentinels
        assert stored.cast(expected.schema).equals(expected), spec.table


def test_replay_twice_adds_nothing_and_force_counts_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=500, seed=1), path)
    first = replay(tmp_path, [path])
    before = rows(tmp_path, "trades")
    second = replay(tmp_path, [path])
    forced = replay(tmp_path, [path], force=True)
    assert first.totals["loaded"] == 500
    assert second.files[0].status == "skipped"
    assert second.totals["records"] == 0
    assert second.totals["skipped"] == 500
    assert forced.totals["duplicates"] == 500
    assert forced.totals["loaded"] == 0
    assert rows(tmp_path, "trades").equals(before)


def test_replay_keeps_every_trade_of_one_exchange_packet(tmp_path: Path) -> None:
    path = tmp_path / "t.dbn"
    result = write_dbn(SynthSpec(schema="trades", records=300, seed=4, shared_key_trades=40), path)
    report = replay(tmp_path, [path])
    stored = rows(tmp_path, "trades")
    assert report.totals["loaded"] == result.records == stored.num_rows
    keys = {
        tuple(r.values())
        for r in stored.select(["instrument_id", "ts_recv", "ts_event", "sequence"]).to_pylist()
    }
    assert len(keys) < stored.num_rows


@pytest.mark.parametrize(
    ("schema", "defects", "expected_rules", "warned"),
    [
        (
            "trades",
            Defects(
                zero_size=7,
                missing_price=5,
                bad_timestamp=3,
                unmapped_instrument=4,
                exact_duplicates=6,
            ),
            {
                "zero_size": "size_positive",
                "missing_price": "price_present",
                "bad_timestamp": "index_ts_in_file_range",
            },
            # an instrument without a mapping loads with symbol NULL (as to_df shows it)
            {"unmapped_instrument": "symbol_present"},
        ),
        (
            "mbp-1",
            Defects(
                crossed_quotes=9, locked_quotes=4, missing_price=5, zero_size=3, exact_duplicates=2
            ),
            {"missing_price": "event_price_present", "zero_size": "event_size_positive"},
            {"crossed_quotes": "quote_not_crossed", "locked_quotes": "quote_not_locked"},
        ),
        (
            "mbp-10",
            Defects(crossed_quotes=2, missing_price=4, zero_size=3),
            {"missing_price": "event_price_present", "zero_size": "event_size_positive"},
            {"crossed_quotes": "quote_not_crossed"},
        ),
        (
            "tbbo",
            Defects(crossed_quotes=3, zero_size=2),
            {"zero_size": "size_positive"},
            {"crossed_quotes": "quote_not_crossed"},
        ),
        (
            "tcbbo",
            Defects(missing_price=3, locked_quotes=2),
            {"missing_price": "price_present"},
            {"locked_quotes": "quote_not_locked"},
        ),
        (
            "ohlcv-1m",
            Defects(high_below_low=6, missing_price=2),
            {"high_below_low": "high_ge_open_close_low", "missing_price": "bar_prices_present"},
            {},
        ),
    ],
)
def test_replay_quarantines_exactly_the_injected_defects(
    tmp_path: Path,
    schema: str,
    defects: Defects,
    expected_rules: dict[str, str],
    warned: dict[str, str],
) -> None:
    path = tmp_path / f"{schema}.dbn.zst"
    result = write_dbn(SynthSpec(schema=schema, records=2000, seed=11, defects=defects), path)
    report = replay(tmp_path, [path], batch_size=333)  # defects straddle batch boundaries
    file = report.files[0]
    injected = {name: set(rows.tolist()) for name, rows in result.defect_rows.items()}
    bad = set().union(*(injected[name] for name in expected_rules))
    assert file.quarantined == len(bad)
    assert file.duplicates == defects.exact_duplicates
    assert file.records == file.loaded + file.duplicates + file.quarantined == result.records
    assert file.quarantine_file is not None
    quarantined = pl.read_parquet(file.quarantine_file)
    assert set(quarantined["ordinal"].to_list()) == bad
    for name, rule in expected_rules.items():
        broke = quarantined.filter(pl.col("rules_broken").list.contains(rule))["ordinal"]
        assert set(broke.to_list()) == injected[name], name
        assert file.rules[rule] == len(injected[name])
    for name, rule in warned.items():  # warnings: loaded and counted, not quarantined
        assert file.rules[rule] == len(injected[name]), rule
        assert not injected[name] & set(quarantined["ordinal"].to_list())
    # nothing else was counted (high < low also puts low above open and close)
    extra = {"low_le_open_close"} if defects.high_below_low else set()
    assert set(file.rules) == set(expected_rules.values()) | set(warned.values()) | extra
    assert quarantined["source_file"].unique().to_list() == [str(path.resolve())]


def test_validate_only_touches_no_database(tmp_path: Path) -> None:
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=100, seed=2, defects=Defects(zero_size=3)), path)
    report = replay(tmp_path, [path], validate_only=True)
    file = report.files[0]
    assert (file.status, file.valid, file.quarantined, file.loaded) == ("validated", 97, 3, 0)
    assert not (tmp_path / "h.duckdb").exists()


def test_on_invalid_fail_rejects_the_whole_file(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.dbn", tmp_path / "bad.dbn"
    write_dbn(SynthSpec(schema="trades", records=100, seed=2), good)
    write_dbn(
        SynthSpec(
            schema="trades",
            records=100,
            seed=3,
            start=SynthSpec.start.replace(day=20),
            defects=Defects(missing_price=2),
        ),
        bad,
    )
    report = replay(tmp_path, [bad, good], on_invalid="fail")
    by_name = {Path(f.path).name: f for f in report.files}
    assert by_name["bad.dbn"].status == "failed"
    assert "price_present: 2" in (by_name["bad.dbn"].error or "")
    assert by_name["bad.dbn"].quarantine_file  # the evidence is kept
    assert by_name["good.dbn"].status == "loaded"
    assert rows(tmp_path, "trades").num_rows == 100


def test_corrupt_file_loads_nothing_and_the_others_still_load(tmp_path: Path) -> None:
    good, cut = tmp_path / "good.dbn", tmp_path / "cut.dbn"
    write_dbn(SynthSpec(schema="trades", records=100, seed=2), good)
    write_dbn(SynthSpec(schema="trades", records=5000, seed=5, defects=Defects(zero_size=5)), cut)
    cut.write_bytes(cut.read_bytes()[:-7])
    report = replay(tmp_path, [cut, good], batch_size=1000)
    failed = report.failed
    assert [Path(f.path).name for f in failed] == ["cut.dbn"]
    assert "truncated: it ends inside a record" in (failed[0].error or "")
    assert failed[0].loaded == 0
    assert failed[0].quarantine_file is None
    assert rows(tmp_path, "trades").num_rows == 100
    assert not list((tmp_path / "quarantine").rglob("cut.dbn*"))


@pytest.mark.parametrize("checksum", [False, True], ids=["no-checksum", "checksum"])
def test_replay_when_zstd_file_truncated_exits_1_loads_nothing_of_it_and_the_other_file(
    tmp_path: Path, checksum: bool
) -> None:
    good, plain = tmp_path / "good.dbn.zst", tmp_path / "cut.dbn"
    write_dbn(SynthSpec(schema="trades", records=100, seed=2), good)
    write_dbn(
        SynthSpec(schema="trades", records=20_000, seed=5, defects=Defects(zero_size=5)), plain
    )
    data = plain.read_bytes()
    with DbnFile(plain) as dbn:
        header = dbn.header_length
    # one frame per 1000 records: a cut inside a frame leaves whole records before it, which
    # is what a silently short decompression looks like
    compressor = zstandard.ZstdCompressor(write_checksum=checksum)
    step = 1000 * 48
    frames = [data[:header]] + [data[i : i + step] for i in range(header, len(data), step)]
    compressed = [compressor.compress(frame) for frame in frames]
    cut = tmp_path / "cut.dbn.zst"
    cut.write_bytes(b"".join(compressed[:-3]) + compressed[-3][:-10])
    plain.unlink()
    db = f"duckdb:///{tmp_path / 'h.duckdb'}"
    args = ["replay", str(cut), str(good), "--db", db, "--batch-size", "1000"]
    result = subprocess.run([*HISTETL, *args], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert f"{cut} at byte {cut.stat().st_size}: file is truncated: its zstd stream ends" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert [(Path(e.path).name, e.loaded) for e in read_ledger(db)] == [("good.dbn.zst", 100)]
    assert rows(tmp_path, "trades").num_rows == 100
    assert [p.name for p in tmp_path.rglob("*") if "cut" in p.name] == ["cut.dbn.zst"]


@pytest.mark.parametrize("size", [0, -5, 10_000_001, 10**12])
def test_replay_when_batch_size_out_of_range_refuses_it_naming_the_range(
    tmp_path: Path, size: int
) -> None:
    with pytest.raises(ConfigError, match=r"allowed 1 to 10,000,000 records") as info:
        Replayer(ReplayOptions(db=f"duckdb:///{tmp_path / 'h.duckdb'}", batch_size=size))
    assert info.value.where == "--batch-size"
    if size == 10**12:  # the CLI says the same, as a usage error, before any work
        trades = tmp_path / "t.dbn"
        write_dbn(SynthSpec(schema="trades", records=10, seed=1), trades)
        args = ["replay", str(trades), "--batch-size", str(size)]
        result = subprocess.run([*HISTETL, *args], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 2
        assert result.stderr.startswith(
            "error: --batch-size: batch size 1,000,000,000,000 is out of range: allowed 1 to "
            "10,000,000 records"
        )
        assert not (tmp_path / "histetl.duckdb").exists()


def test_user_rules_disable_add_and_regrade(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  trades:\n    - name: small_trades_only\n      expr: size < 5\n"
        "disable: [size_positive]\nseverity: {price_present: warn}\n"
    )
    path = tmp_path / "t.dbn"
    write_dbn(
        SynthSpec(
            schema="trades", records=400, seed=6, defects=Defects(zero_size=4, missing_price=3)
        ),
        path,
    )
    report = replay(tmp_path, [path], rules_files=(rules,))
    file = report.files[0]
    assert "size_positive" not in file.rules
    assert file.rules["price_present"] == 3  # now a warning: loaded
    sizes = np.array(rows(tmp_path, "trades").column("size").to_pylist())
    assert (sizes < 5).all()
    assert file.quarantined == file.rules["small_trades_only"] > 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules:\n  trades:\n    - {name: x, expr: 'nosuchcolumn > 1'}\n", "rule x (trades)"),
        ("rules:\n  trades:\n    - {name: x, expr: 'size + 1'}\n", "not a boolean"),
        ("disable: [no_such_rule]\n", "unknown rule 'no_such_rule'"),
        (
            "rules:\n  trades:\n    - {name: x, expr: 'size > 0', severity: fatal}\n",
            "rules.trades[0].severity",
        ),
    ],
)
def test_bad_rules_file_fails_before_any_work(tmp_path: Path, text: str, message: str) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        Replayer(ReplayOptions(db="duckdb:///unused.duckdb", rules_files=(rules,)))
    assert str(rules) in info.value.message
    assert not Path("unused.duckdb").exists()


def test_mapping_renames_derives_and_drops(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "tables:\n  trades:\n    table: es_trades\n"
        "    derive: {notional: 'price * size'}\n    drop: [ts_in_delta]\n"
        "    rename: {price: px, ts_recv: ts}\n"
    )
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=50, seed=1), path)
    report = replay(tmp_path, [path], mapping_file=mapping)
    stored = rows(tmp_path, "es_trades")
    assert report.files[0].table == "es_trades"
    assert stored.num_rows == 50
    assert {"px", "ts", "notional"} <= set(stored.column_names)
    assert "ts_in_delta" not in stored.column_names
    first = stored.to_pylist()[0]
    assert first["notional"] == first["px"] * first["size"]


def test_bad_mapping_names_the_key(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("tables:\n  trades:\n    drop: [record_hash]\n")
    with pytest.raises(ConfigError, match="key column record_hash cannot be dropped"):
        Replayer(ReplayOptions(mapping_file=mapping))
    mapping.write_text("tables:\n  trades:\n    renam: {price: px}\n")
    with pytest.raises(ConfigError, match=r"tables\.trades\.renam: unknown key"):
        Replayer(ReplayOptions(mapping_file=mapping))


# the validation rules that only count (warn): a real sample may break these and still load
WARN_ONLY = {"symbol_present", "ts_recv_not_before_ts_event", "quote_not_locked"}


@pytest.mark.parametrize("path", sample_params())
def test_real_databento_sample_replayed_alone_loads_every_record_equal_to_databento_to_df(
    tmp_path: Path, path: Path
) -> None:
    checked = replay(tmp_path, [path], validate_only=True).files[0]
    assert (checked.status, checked.quarantined) == ("validated", 0), checked.rules
    assert checked.valid == checked.records
    report = replay(tmp_path, [path])
    (file,) = report.files
    assert (file.status, file.quarantined, file.duplicates) == ("loaded", 0, 0), file.error
    assert file.loaded == file.records == checked.records
    assert set(file.rules) <= WARN_ONLY, file.rules
    with DbnFile(path) as dbn:
        has_mappings = bool(dbn.metadata.mappings)
    # a file without symbology mappings (dbn-versions/statistics.v*) loads with symbol NULL,
    # as databento's own to_df shows it, and is counted by the symbol_present warning
    assert file.rules.get("symbol_present", 0) == (0 if has_mappings else file.records)
    # every column as DBNStore.to_df(price_type="fixed", map_symbols=True) shows it (and as
    # decimals), definition integers at their type's maximum as NULL ...
    assert mismatches(path) == []
    # ... and the stored table holds exactly those decoded rows
    decoded, spec = decode_with_symbols(path)
    expected = decoded.cast(spec.arrow_schema).sort_by(
        [(c, "ascending") for c in decoded.column_names]
    )
    stored = rows(tmp_path, spec.table) if file.records else expected.slice(0, 0)
    assert stored.num_rows == file.records
    assert stored.cast(expected.schema).equals(expected)


def test_sample_files_cover_every_venue_folder_and_dbn_version() -> None:
    files = sample_files()
    if not files:
        pytest.skip("no Databento sample files beside the project")
    assert {p.parent.name for p in files} >= {"GLBX.MDP3", "XNAS.ITCH", "dbn-versions"}
    assert len(files) >= 71


def test_file_without_symbology_loads_into_postgres_with_symbol_null(
    tmp_path: Path, pg_server: PgServer
) -> None:
    path = tmp_path / "nosym.statistics.dbn.zst"
    write_dbn(SynthSpec(schema="statistics", records=120, symbology=False, seed=6), path)
    with fresh_schema(pg_server.uri) as (uri, _schema):
        report = Replayer(ReplayOptions(db=uri, quarantine_dir=tmp_path / "quarantine")).run([path])
        (file,) = report.files
        assert (file.status, file.loaded, file.quarantined) == ("loaded", 120, 0)
        assert file.rules == {"symbol_present": 120}
        with psycopg.connect(uri) as conn:
            row = conn.execute(
                "SELECT count(*), count(symbol), count(DISTINCT instrument_id) FROM statistics"
            ).fetchone()
        assert row is not None
        assert row[:2] == (120, 0)
        assert row[2] >= 1


# -- input paths --------------------------------------------------------------------------------


def small(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_dbn(SynthSpec(schema="trades", records=20, seed=seed), path)
    return path


@pytest.mark.parametrize("locked", ["file", "folder"])
def test_replay_when_a_path_under_the_folder_is_unreadable_fails_before_any_work(
    locked: str,
) -> None:
    with shared_dir() as shared:
        raw = shared / "raw"
        small(raw / "a.dbn")
        target = small(raw / "sub" / "b.dbn", seed=1)
        (target if locked == "file" else target.parent).chmod(0)
        (shared / "logs").mkdir(mode=0o777)

        result = run_cli(
            "replay", raw, "--db", "duckdb:///h.duckdb",
            cwd=shared, env={"HISTETL_LOG_DIR": str(shared / "logs")}, unprivileged=True,
        )  # fmt: skip

        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        shown = target if locked == "file" else target.parent
        assert f"error: {shown}: cannot read" in result.stderr
        assert "Permission denied" in result.stderr
        assert not (shared / "h.duckdb").exists()  # nothing was touched


# -- load-time failures of rules and quarantine output --------------------------------------------


def test_rule_that_raises_on_the_data_fails_that_file_naming_the_rule(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  trades:\n    - {name: symbol_is_number, expr: 'CAST(symbol AS INT) > 0'}\n"
    )
    trades = small(tmp_path / "raw" / "t.dbn")
    bars = tmp_path / "raw" / "bars.dbn"
    write_dbn(SynthSpec(schema="ohlcv-1m", records=30), bars)

    report = replay(tmp_path, [trades, bars], rules_files=(rules,))

    failed, loaded = report.files
    assert failed.status == "failed"
    assert failed.error is not None
    assert "rule symbol_is_number" in failed.error
    assert str(trades) in failed.error
    assert (loaded.status, loaded.loaded) == ("loaded", 30)
    with duckdb.connect(str(tmp_path / "h.duckdb"), read_only=True) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert "ohlcv_1m" in tables
    assert "trades" not in tables or rows(tmp_path, "trades").num_rows == 0


def test_quarantine_folder_on_a_full_disk_fails_the_file_and_loads_nothing_of_it(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "raw" / "bad.dbn"
    bad.parent.mkdir()
    write_dbn(SynthSpec(schema="trades", records=400, defects=Defects(zero_size=300)), bad)
    good = small(tmp_path / "raw" / "good.dbn", seed=3)
    with tiny_fs() as full:
        fill(full)
        options = ReplayOptions(db=f"duckdb:///{tmp_path / 'h.duckdb'}", quarantine_dir=full / "q")
        report = Replayer(options).run(expand_paths([bad, good]))
        litter = [p for p in full.rglob("*") if p.name != ".filler" and p.is_file()]

    assert [f.status for f in report.files] == ["failed", "loaded"]
    assert report.files[0].error is not None
    assert "cannot write quarantine file" in report.files[0].error
    assert "No space left on device" in report.files[0].error
    assert report.files[0].loaded == 0
    assert litter == []
    assert rows(tmp_path, "trades").num_rows == 20  # only the good file


class _InterruptedMidFile:
    """An observer raising KeyboardInterrupt at the third batch, as Polars does when it takes
    a SIGINT during a query (in the pipeline's threads, where histetl's handler never runs)."""

    def __init__(self) -> None:
        self.batches = 0

    def file_started(self, report: object) -> None: ...
    def file_finished(self, report: object) -> None: ...

    def batch(self, report: object, spec: object, valid: object, invalid: object) -> None:
        self.batches += 1
        if self.batches == 3:
            raise KeyboardInterrupt


def test_replay_when_a_library_raises_keyboardinterrupt_stops_and_loads_nothing(
    tmp_path: Path,
) -> None:
    import signal

    from histetl.interrupt import CANCEL, Interrupted

    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=5_000), path)
    db = tmp_path / "t.duckdb"
    replayer = Replayer(
        ReplayOptions(db=f"duckdb:///{db}", quarantine_dir=tmp_path / "q", batch_size=1_000)
    )
    replayer.observer = _InterruptedMidFile()  # type: ignore[assignment]
    try:
        with pytest.raises(Interrupted) as caught:
            replayer.run([path])
        assert (caught.value.exit_code, CANCEL.signum) == (
            130,
            signal.SIGINT,
        )  # nothing else starts
    finally:
        CANCEL.reset()
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM trades").fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM histetl_ledger").fetchall() == [(0,)]
