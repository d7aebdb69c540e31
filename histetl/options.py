"""What a replay is asked to do: options shared by the CLI, the pipeline, `run` and the
cluster. Light (no decode or database imports), so the CLI builds them without loading a stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from histetl.config import DEFAULT_BATCH_SIZE, MAX_DB_WRITERS, default_db
from histetl.errors import ConfigError
from histetl.outputs import check_output_dir
from histetl.targets import RetryPolicy

MAX_BATCH_SIZE = 10_000_000  # records per batch: 5 GB of raw records at the widest (definition)


@dataclass
class ReplayOptions:
    db: str = field(default_factory=default_db)
    batch_size: int = DEFAULT_BATCH_SIZE
    force: bool = False
    validate_only: bool = False
    on_invalid: Literal["quarantine", "fail"] = "quarantine"
    quarantine_dir: Path = Path("quarantine")
    rules_files: tuple[Path, ...] = ()
    mapping_file: Path | None = None
    db_retry: RetryPolicy = field(default_factory=RetryPolicy)
    workers: int = 1  # files loaded in parallel by this many processes (PostgreSQL targets)
    cluster: str | None = None  # run the files as tasks on Dask: tcp://HOST:PORT, local[:N]
    max_db_writers: int = MAX_DB_WRITERS  # with cluster: files loading into the database at once

    def check(self) -> None:
        """ConfigError for values out of range or a quarantine folder histetl cannot write,
        before any file is touched."""
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ConfigError(
                f"batch size {self.batch_size:,} is out of range: allowed 1 to "
                f"{MAX_BATCH_SIZE:,} records",
                where="--batch-size",
                hint=f"the default, {DEFAULT_BATCH_SIZE:,}, is fast; memory grows with the size",
            )
        if self.workers < 1:
            raise ConfigError("workers must be at least 1", where="--workers")
        check_output_dir(self.quarantine_dir, "--quarantine-dir")
