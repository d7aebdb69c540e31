"""histetl.cli: the command group (every command and job-file key documented) and what spans
commands (replay --validate-only, then the quarantine listing). Each command family has its own
module: test_load, test_database, test_read, test_lake, test_generate."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from histetl.cli import main
from histetl.cli.common import handle_errors
from histetl.jobs import JobFile, JobSpec

ROOT = Path(__file__).resolve().parents[2]


def commands() -> list[tuple[str, click.Command]]:
    found = []
    for name, command in main.commands.items():
        if isinstance(command, click.Group):
            found.extend((f"{name} {sub}", cmd) for sub, cmd in command.commands.items())
        found.append((name, command))
    return found


@pytest.mark.parametrize(("name", "command"), commands(), ids=lambda c: str(c))
def test_every_command_has_help_text_and_a_readme_section(
    name: str, command: click.Command
) -> None:
    assert command.help, name
    assert len(command.help.strip()) > 20, name
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts[0]} has no help"
    readme = (ROOT / "README.md").read_text()
    top = name.split()[0]
    assert re.search(rf"^### `histetl {re.escape(top)}`", readme, re.MULTILINE), (
        f"README.md has no '### `histetl {top}`' section"
    )


@pytest.mark.parametrize(
    ("name", "command"),
    [(n, c) for n, c in commands() if not isinstance(c, click.Group)],
    ids=lambda c: str(c),
)
def test_every_command_runs_through_handle_errors_which_configures_logging(
    name: str, command: click.Command
) -> None:
    # the group only records -v/-q/--log-json; `handle_errors` applies them when the command
    # runs: a command without it would log with loguru's defaults and print tracebacks
    wrapper_code = handle_errors(lambda: None).__code__
    assert command.callback is not None, name
    assert command.callback.__code__ is wrapper_code, name


def test_validate_only_and_quarantine_listing(
    trades_dbn: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    checked = runner.invoke(main, ["replay", str(trades_dbn), "--validate-only"])
    assert checked.exit_code == 0, checked.output
    assert not Path("histetl.duckdb").exists()
    listing = runner.invoke(main, ["quarantine"])
    assert "size_positive: 2" in listing.output
    one = next(Path("quarantine").rglob("*.parquet"))
    shown = runner.invoke(main, ["quarantine", str(one), "--rows", "2"])
    assert shown.exit_code == 0
    assert "size_positive" in shown.output


def _keys(model: type[BaseModel], prefix: str) -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            keys.extend(_keys(nested, key + "."))
        else:
            keys.append(key)
    return keys


def test_every_job_file_key_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    keys = _keys(JobFile, "") + _keys(JobSpec, "jobs[].")
    missing = [k for k in keys if f"`{k}`" not in readme]
    assert missing == []
