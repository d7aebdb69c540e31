"""Quarantine output: one file per input, names from a file never escape the folder, partial
files of killed runs are cleaned up, and `histetl quarantine FILE` shows what broke first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from histetl.cli import main
from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.quarantine import (
    QuarantineWriter,
    column_order,
    list_quarantine,
    quarantine_path,
    remove_stale_partials,
    rule_columns,
    rule_expressions,
    safe_name,
)
from histetl.report import RunReport
from histetl.source.files import expand_paths
from histetl.synth import Defects, SynthSpec, write_dbn


def synth(path: Path, *, dataset: str = "GLBX.MDP3", seed: int = 0, zero_size: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = SynthSpec(
        schema="trades",
        records=60,
        dataset=dataset,
        seed=seed,
        defects=Defects(zero_size=zero_size),
    )
    write_dbn(spec, path)
    return path


def validate(tmp_path: Path, paths: list[Path], qdir: Path | None = None) -> RunReport:
    options = ReplayOptions(validate_only=True, quarantine_dir=qdir or tmp_path / "quarantine")
    return Replayer(options).run(expand_paths(paths))


def test_two_inputs_with_the_same_name_in_different_folders_get_their_own_quarantine_files(
    tmp_path: Path,
) -> None:
    a = synth(tmp_path / "a" / "test_data.trades.dbn", seed=1, zero_size=2)
    b = synth(tmp_path / "b" / "test_data.trades.dbn", seed=2, zero_size=5)

    report = validate(tmp_path, [a, b])

    files = [Path(f.quarantine_file or "") for f in report.files]
    assert len(set(files)) == 2
    assert all(f.is_file() for f in files)
    assert all(f.name.startswith("test_data.trades.dbn.") for f in files)  # still readable
    for f, source, n in zip(files, (a, b), (2, 5), strict=True):
        frame = pl.read_parquet(f)
        assert frame.height == n
        assert frame["source_file"].unique().to_list() == [str(source)]


@pytest.mark.parametrize("dataset", ["../../x", "/tmp/abs", "..", ".hidden", "a/../../b"])
def test_dataset_name_from_the_file_never_writes_outside_the_quarantine_folder(
    tmp_path: Path, dataset: str
) -> None:
    source = synth(tmp_path / "raw" / "evil.dbn", dataset=dataset)
    qdir = tmp_path / "deep" / "quarantine"

    report = validate(tmp_path, [source], qdir)

    written = Path(report.files[0].quarantine_file or "")
    assert written.is_file()
    assert written.resolve().is_relative_to(qdir.resolve())
    assert len(written.relative_to(qdir).parts) == 4  # run / dataset / schema / file
    outside = [
        p for p in tmp_path.rglob("*.parquet") if not p.resolve().is_relative_to(qdir.resolve())
    ]
    assert outside == []
    assert not Path("/tmp/abs").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GLBX.MDP3", "GLBX.MDP3"),
        ("../../x", "____x"),
        ("/etc/passwd", "_etc_passwd"),
        ("..", "_"),
        (".", "_"),
        ("", "_"),
        (".hidden", "hidden"),
        ("a b\x00c", "a_b_c"),
    ],
)
def test_safe_name_keeps_only_harmless_path_components(text: str, expected: str) -> None:
    assert safe_name(text) == expected


def test_quarantine_path_when_a_planted_symlink_points_outside_refuses(tmp_path: Path) -> None:
    root = tmp_path / "q"
    (root / "run").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "run" / "GLBX.MDP3").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(Exception, match="outside"):
        quarantine_path(root, "run", "GLBX.MDP3", "trades", tmp_path / "f.dbn")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_partial_files_of_a_killed_run_are_removed_and_a_live_runs_are_kept(
    tmp_path: Path,
) -> None:
    qdir = tmp_path / "quarantine"
    folder = qdir / "20260101T000000Z-abcdef" / "GLBX.MDP3" / "trades"
    folder.mkdir(parents=True)
    dead = folder / f"x.dbn.12345678.parquet.{_dead_pid()}.partial"
    live = folder / f"y.dbn.12345678.parquet.{os.getpid()}.partial"
    dead.write_bytes(b"PAR1")
    live.write_bytes(b"PAR1")
    source = synth(tmp_path / "raw" / "t.dbn", zero_size=0)

    validate(tmp_path, [source], qdir)

    assert not dead.exists()
    assert live.exists()  # a concurrent run's file in the making
    assert remove_stale_partials(qdir) == []


def test_partial_file_name_carries_the_writer_pid(tmp_path: Path) -> None:
    writer = QuarantineWriter(tmp_path / "q" / "f.parquet", tmp_path / "f.dbn")
    writer.write(pl.DataFrame({"rules_broken": [["r"]], "ordinal": [0]}))
    assert [p.name for p in (tmp_path / "q").iterdir()] == [f"f.parquet.{os.getpid()}.partial"]
    writer.discard()
    assert list((tmp_path / "q").iterdir()) == []


def test_killed_run_leaves_a_partial_file_that_the_next_run_removes(tmp_path: Path) -> None:
    """A real process killed while its quarantine file is open."""
    qdir = tmp_path / "quarantine"
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "import polars as pl\n"
        "from histetl.quarantine import QuarantineWriter\n"
        f"w = QuarantineWriter(Path({str(qdir / 'r' / 'D' / 's' / 'f.parquet')!r}), Path('f'))\n"
        "w.write(pl.DataFrame({'rules_broken': [['r']], 'ordinal': [0]}))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=False)
    partials = list(qdir.rglob("*.partial"))
    assert len(partials) == 1

    validate(tmp_path, [synth(tmp_path / "raw" / "t.dbn", zero_size=0)], qdir)

    assert list(qdir.rglob("*.partial")) == []


def test_list_quarantine_ignores_parquet_files_outside_the_layout(tmp_path: Path) -> None:
    source = synth(tmp_path / "raw" / "t.dbn")
    report = validate(tmp_path, [source])
    (tmp_path / "quarantine" / "stray.parquet").write_bytes(b"x")
    assert list_quarantine(tmp_path / "quarantine") == [Path(report.files[0].quarantine_file or "")]


def test_quarantine_file_shows_broken_rules_and_the_columns_they_read_first(
    tmp_path: Path,
) -> None:
    source = synth(tmp_path / "raw" / "t.dbn", zero_size=4)
    qfile = Path(validate(tmp_path, [source]).files[0].quarantine_file or "")

    expr = rule_expressions(qfile)["size_positive"]
    read = rule_columns(expr, pl.read_parquet_schema(qfile).names())
    assert "size" in read
    assert column_order(qfile)[: len(read) + 2] == ["rules_broken", *read, "ordinal"]
    result = CliRunner().invoke(main, ["quarantine", str(qfile), "--rows", "3"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:2] == ["4", "size_positive"]
    assert lines[0].endswith(f"{expr}  (reads {', '.join(read)})")
    header = next(line for line in lines if "rules_broken" in line)
    assert header.index("rules_broken") < header.index("size") < header.index("ordinal")


def test_quarantine_command_on_a_file_that_is_not_a_quarantine_file_says_so(
    tmp_path: Path,
) -> None:
    garbage = tmp_path / "x.parquet"
    garbage.write_bytes(b"not parquet at all")
    result = CliRunner().invoke(main, ["quarantine", str(garbage)])
    assert result.exit_code == 1
    assert "not a readable quarantine file" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_quarantine_listing_shows_an_unreadable_file_and_goes_on(tmp_path: Path) -> None:
    source = synth(tmp_path / "raw" / "t.dbn")
    good = Path(validate(tmp_path, [source]).files[0].quarantine_file or "")
    bad = good.with_name("broken.dbn.00000000.parquet")
    bad.write_bytes(b"garbage")
    result = CliRunner().invoke(
        main, ["quarantine", "--quarantine-dir", str(tmp_path / "quarantine")]
    )
    assert result.exit_code == 0, result.output
    assert f"{bad}  (unreadable: not a readable quarantine file" in result.output
    assert f"{good}  (size_positive: 3)" in result.output
