"""Loading YAML into pydantic models, with errors that name the file and the key path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from histetl.errors import ConfigError

if TYPE_CHECKING:  # yaml and pydantic load on first use: `histetl --help` needs neither
    import yaml
    from pydantic import BaseModel

M = TypeVar("M", bound="BaseModel")

DEFAULT_DB = "duckdb:///./histetl.duckdb"
DB_ENV_VAR = "HISTETL_DB"
CLUSTER_ENV = "HISTETL_CLUSTER"

# Defaults the CLI shows in --help, here (a light module) so that the CLI's import chain loads
# no target or options module: `RetryPolicy` and `ReplayOptions` take theirs from these.
DB_RETRIES = 5
DB_RETRY_MAX_WAIT_S = 30.0
DB_TIMEOUT_S = 300.0
LOCK_TIMEOUT_S = 300.0
MAX_DB_WRITERS = 4
DEFAULT_BATCH_SIZE = 100_000  # records per batch


def default_db() -> str:
    """The target database: env HISTETL_DB, else ./histetl.duckdb."""
    return os.environ.get(DB_ENV_VAR) or DEFAULT_DB


def read_yaml(path: Path, loader: type[yaml.SafeLoader] | None = None) -> Any:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read: {exc.strerror}", where=str(path), hint="check the path"
        ) from exc
    except UnicodeDecodeError:
        raise ConfigError(
            "not a text (UTF-8) file", where=str(path), hint="give a YAML file"
        ) from None
    try:
        # a SafeLoader (or a subclass): no arbitrary objects
        return yaml.load(text, Loader=loader or yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            where=where,
            hint="fix the YAML syntax at that line",
        ) from exc
    except ValueError as exc:  # PyYAML builds dates itself: `2024-13-45` raises here
        raise ConfigError(
            f"not valid YAML: {exc}", where=str(path), hint="dates are YYYY-MM-DD"
        ) from None


def yaml_path(loc: tuple[int | str, ...]) -> str:
    """('jobs', 0, 'schema') -> 'jobs[0].schema'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validate_model(model: type[M], data: Any, source: str) -> M:
    """Validate `data` against `model`; the error names the YAML path of each bad key."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and "[" in p))
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            elif error["type"] == "value_error":  # our validators' own words, not pydantic's
                message = message.removeprefix("Value error, ")
            problems.append(f"{yaml_path(loc)}: {message}")
        raise ConfigError(
            "; ".join(problems), where=source, hint="see the configuration reference in README.md"
        ) from None


def load_model(model: type[M], path: Path, loader: type[yaml.SafeLoader] | None = None) -> M:
    return validate_model(model, read_yaml(path, loader), str(path))
