"""histetl.logs: where the log file goes, the stderr level, and the file keeping DEBUG detail
whatever stderr shows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

import histetl.logs
from histetl.logs import configure, log_dir, logger_level


@pytest.fixture(autouse=True)
def _reset_sinks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(histetl.logs, "_level", histetl.logs._level)  # restored after
    yield
    logger.remove()  # closes the log file configure() opened


def test_log_dir_is_histetl_log_dir_else_xdg_state_else_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HISTETL_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert log_dir() == tmp_path / "logs"
    monkeypatch.delenv("HISTETL_LOG_DIR")
    assert log_dir() == tmp_path / "state" / "histetl"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert log_dir() == tmp_path / "home" / ".local" / "state" / "histetl"


@pytest.mark.parametrize(
    ("flags", "level"), [({}, 20), ({"verbose": True}, 10), ({"quiet": True}, 30)]
)
def test_stderr_shows_the_level_asked_for_and_the_file_keeps_debug(
    flags: dict[str, bool],
    level: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HISTETL_LOG_DIR", str(tmp_path / "logs"))
    configure(**flags)
    assert logger_level() == level
    logger.debug("detail {}", 1)
    logger.info("progress {}", 2)
    logger.warning("trouble {}", 3)

    shown = capfd.readouterr().err.splitlines()
    expected = [
        line for lvl, line in ((10, "DEBUG   detail 1"), (20, "INFO    progress 2")) if lvl >= level
    ] + ["WARNING trouble 3"]
    assert shown == expected
    logger.remove()  # flush and close the file
    kept = (tmp_path / "logs" / "histetl.log").read_text(encoding="utf-8")
    assert ["detail 1" in kept, "progress 2" in kept, "trouble 3" in kept] == [True] * 3


def test_json_logs_are_one_json_object_a_line_on_stderr_and_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HISTETL_LOG_DIR", str(tmp_path / "logs"))
    configure(json_logs=True)
    logger.info("loaded {} rows", 7)
    logger.remove()

    (line,) = capfd.readouterr().err.splitlines()
    assert json.loads(line)["record"]["message"] == "loaded 7 rows"
    (kept,) = (tmp_path / "logs" / "histetl.log").read_text(encoding="utf-8").splitlines()
    assert json.loads(kept)["record"]["level"]["name"] == "INFO"


def test_an_unusable_log_folder_warns_once_and_logs_to_stderr_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").write_text("a file where the folder should be")
    monkeypatch.setenv("HISTETL_LOG_DIR", str(tmp_path / "taken" / "logs"))
    configure()
    logger.info("still shown")

    assert capfd.readouterr().err.splitlines() == [
        f"WARNING cannot write the log file under {tmp_path / 'taken' / 'logs'}; "
        "logging to stderr only",
        "INFO    still shown",
    ]
