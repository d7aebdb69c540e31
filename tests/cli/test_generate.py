"""histetl.cli.generate: `histetl synth` writes the file asked for (the same seed, the same
bytes) and turns a spec the generator cannot meet or a failed write into one line."""

from __future__ import annotations

from pathlib import Path

import databento
import pytest
from click.testing import CliRunner

from histetl.cli import main
from histetl.dbn import ZSTD_MAGIC


def synth(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["synth", *(str(a) for a in args)])
    return result.exit_code, result.stdout, result.stderr


def test_synth_writes_the_records_asked_for_and_the_same_seed_gives_the_same_bytes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nq.dbn.zst"
    args = ["--schema", "trades", "--records", "50", "--symbols", "NQ.c.0", "--dbn-version", "2"]

    code, out, err = synth(path, *args, "--dataset", "GLBX.MDP3", "--start", "2024-01-02")

    assert (code, err) == (0, "")
    assert out == f"wrote 50 trades records to {path}\n"
    assert path.read_bytes()[:4] == ZSTD_MAGIC  # .dbn.zst: compressed
    store = databento.DBNStore.from_bytes(path.read_bytes())
    assert (store.metadata.version, store.dataset, str(store.schema)) == (2, "GLBX.MDP3", "trades")
    assert store.metadata.symbols == ["NQ.c.0"]
    assert store.start.date().isoformat() == "2024-01-02"
    assert len(store.to_ndarray()) == 50

    again = tmp_path / "again.dbn.zst"
    assert synth(again, *args, "--dataset", "GLBX.MDP3", "--start", "2024-01-02")[0] == 0
    assert again.read_bytes() == path.read_bytes()
    other = tmp_path / "other.dbn.zst"
    assert (
        synth(other, *args, "--dataset", "GLBX.MDP3", "--start", "2024-01-02", "--seed", "1")[0]
        == 0
    )
    assert other.read_bytes() != path.read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--shape", "book_clears"],
            "error: histetl synth: --shape 'book_clears': expected NAME=COUNT\n"
            "  hint: names: no_last_trade, sideless_book_updates, book_clears\n",
        ),
        (
            ["--shape", "book_clears=2"],
            "error: histetl synth: shape book_clears does not apply to schema 'trades'\n",
        ),
    ],
    ids=["no-count", "shape-of-another-schema"],
)
def test_synth_when_a_shape_is_wrong_exits_2_and_writes_nothing(
    args: list[str], message: str, tmp_path: Path
) -> None:
    path = tmp_path / "x.dbn"
    assert synth(path, "--schema", "trades", *args) == (2, "", message)
    assert not path.exists()


def test_synth_when_more_bars_are_asked_than_fit_says_what_to_change(tmp_path: Path) -> None:
    code, _, err = synth(tmp_path / "x.dbn", "--schema", "ohlcv-1d", "--records", "5000")
    assert code == 2
    assert err.startswith("error: histetl synth: ohlcv-1d: at most ")
    assert err.endswith("(use more days or symbols, or a finer schema)\n")


def test_synth_on_a_full_disk_exits_1_in_one_line() -> None:
    code, _, err = synth("/dev/full", "--schema", "trades", "--records", "10")
    assert (code, err) == (1, "error: output: cannot write /dev/full: No space left on device\n")
