"""histetl.config: YAML read into pydantic models; every error names the file, the line or the
key path, and says what to do; the default target."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from histetl.config import (
    DEFAULT_DB,
    default_db,
    load_model,
    read_yaml,
    validate_model,
    yaml_path,
)
from histetl.errors import ConfigError


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "x"
    items: list[Inner] = []


def test_default_db_is_histetl_db_else_the_local_duckdb_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HISTETL_DB", raising=False)
    assert default_db() == DEFAULT_DB == "duckdb:///./histetl.duckdb"
    monkeypatch.setenv("HISTETL_DB", "")
    assert default_db() == DEFAULT_DB  # set but empty: the default
    monkeypatch.setenv("HISTETL_DB", "postgresql://u@h/db")
    assert default_db() == "postgresql://u@h/db"


@pytest.mark.parametrize(
    ("loc", "shown"),
    [
        (("jobs", 0, "schema"), "jobs[0].schema"),
        (("databento", "retry", "max_attempts"), "databento.retry.max_attempts"),
        ((3,), "[3]"),
        ((), "(top level)"),
    ],
)
def test_yaml_path_writes_a_pydantic_location_as_the_yaml_key(
    loc: tuple[int | str, ...], shown: str
) -> None:
    assert yaml_path(loc) == shown


def test_validate_model_names_every_bad_key_by_its_yaml_path() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_model(Outer, {"items": [{"size": 1}, {"size": "big", "colour": 1}]}, "f.yaml")
    error = caught.value
    assert error.where == "f.yaml"
    assert error.what == (
        "items[1].size: Input should be a valid integer, unable to parse string as an integer; "
        "items[1].colour: unknown key"
    )
    assert error.hint == "see the configuration reference in README.md"
    assert error.exit_code == 2


def test_validate_model_takes_an_empty_document_as_all_defaults() -> None:
    assert validate_model(Outer, None, "empty.yaml") == Outer()


def test_load_model_reads_and_validates_a_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: es\nitems:\n  - size: 2\n", encoding="utf-8")
    assert load_model(Outer, path) == Outer(name="es", items=[Inner(size=2)])


def test_read_yaml_when_missing_says_check_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        read_yaml(tmp_path / "nope.yaml")
    assert caught.value.message == (
        f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory\n  hint: check the path"
    )


def test_read_yaml_when_binary_says_it_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not a text \\(UTF-8\\) file") as caught:
        read_yaml(path)
    assert caught.value.where == str(path)


def test_read_yaml_when_syntax_is_bad_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: es\nitems: [1, 2\nother: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_yaml(path)
    assert caught.value.message == (
        f"{path}:3: not valid YAML: expected ',' or ']', but got ':'\n"
        "  hint: fix the YAML syntax at that line"
    )  # line 3: where PyYAML notices the missing bracket


def test_read_yaml_when_a_date_is_impossible_says_how_dates_are_written(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("start: 2024-13-45\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_yaml(path)
    assert caught.value.message == (
        f"{path}: not valid YAML: month must be in 1..12\n  hint: dates are YYYY-MM-DD"
    )


def test_read_yaml_builds_no_arbitrary_objects(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("x: !!python/object/apply:os.getcwd []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml(path)


def test_read_yaml_uses_the_loader_given(tmp_path: Path) -> None:
    class Upper(yaml.SafeLoader):
        pass

    Upper.add_constructor("!up", lambda loader, node: loader.construct_scalar(node).upper())
    path = tmp_path / "c.yaml"
    path.write_text("name: !up es\n", encoding="utf-8")
    assert read_yaml(path, Upper) == {"name": "ES"}
    with pytest.raises(ConfigError):
        read_yaml(path)  # the plain SafeLoader does not know the tag
