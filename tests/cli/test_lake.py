"""histetl.cli.lake: what `histetl lake optimize / vacuum` print around the library: nothing to
do on an empty lake, one line per table, the dry-run note only when files would go. Compaction,
retention and the errors are tested in tests/targets/delta/test_lake.py."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from histetl.cli import main


def histetl(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_lake_commands_on_a_lake_without_tables_say_there_is_nothing_to_do(
    tmp_path: Path,
) -> None:
    db = f"delta:///{tmp_path}"
    for command in (["optimize"], ["vacuum"], ["vacuum", "--apply"]):
        result = histetl("lake", *command, "--db", db)
        assert (result.exit_code, result.stdout) == (
            0,
            "no tables in the lake yet: nothing to do\n",
        ), command


def test_lake_commands_print_a_line_per_table_and_the_dry_run_note_only_when_files_would_go(
    trades_dbn: Path, tmp_path: Path
) -> None:
    db = f"delta:///{tmp_path / 'lake'}"
    loaded = histetl("replay", trades_dbn, "--db", db, "--quarantine-dir", tmp_path / "q")
    assert loaded.exit_code == 0, loaded.output

    optimized = histetl("lake", "optimize", "--db", db, "--zorder", " , ")  # no column: none
    vacuumed = histetl("lake", "vacuum", "--db", db)
    applied = histetl("lake", "vacuum", "--db", db, "--table", "trades", "--apply")

    assert (optimized.exit_code, optimized.stdout) == (0, "trades: nothing to compact\n")
    assert (vacuumed.exit_code, vacuumed.stdout) == (
        0,
        "trades: 0 files to delete (unneeded for 168 h); dry run, none deleted\n",
    )
    assert (applied.exit_code, applied.stdout) == (
        0,
        "trades: 0 files deleted (unneeded for 168 h)\n",
    )
