"""What a histetl commit to a Delta table carries and how it is made: the application
transaction `histetl:<sha256>` and the ledger record in the commit metadata, a commit made only
on the table version it was prepared on, and the retries after another writer's commit. Used by
a file's load (`sink.py`) and a window's replacement (`replace.py`)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import TypeVar

from deltalake import CommitProperties, Transaction
from deltalake.exceptions import CommitFailedError, DeltaError
from loguru import logger
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from histetl import objstore
from histetl.errors import LoadError
from histetl.interrupt import CANCEL
from histetl.targets.base import LedgerEntry
from histetl.targets.delta.ledger import LEDGER_KEY, app_id

_MAX_CONFLICT_RETRIES = 20  # commit attempts while other writers commit first
_T = TypeVar("_T")


def commit_retrying(where: str, attempt: Callable[[], _T], hint: str) -> _T:
    """`attempt` (a check and one commit), again after another writer's commit (a conflict)
    with jittered backoff that a stop request ends at once; storage and Delta failures as
    one-line errors naming the table at `where`."""
    retrying = Retrying(
        retry=retry_if_exception_type(CommitFailedError),
        stop=stop_after_attempt(_MAX_CONFLICT_RETRIES),
        wait=wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.05),
        sleep=CANCEL.sleep,
        before_sleep=lambda state: logger.debug(
            "Delta commit conflict on {} (attempt {}): {}",
            where,
            state.attempt_number,
            state.outcome.exception() if state.outcome else "",
        ),
        reraise=True,
    )
    try:
        return retrying(attempt)
    except CommitFailedError:
        raise LoadError(
            f"Delta commit kept conflicting with other writers ({_MAX_CONFLICT_RETRIES} tries)",
            where=where,
            hint=hint,
        ) from None
    except OSError as exc:
        raise objstore.storage_error(exc, where) from None
    except DeltaError as exc:
        raise LoadError(f"Delta commit failed: {exc}", where=where) from None


def ledger_commit(entry: LedgerEntry, version: int) -> CommitProperties:
    """A commit carrying `entry` as its ledger record and the application transaction of
    `entry.sha256` at `version`, made only on the table version it was built on: any commit
    since fails with CommitFailedError (the caller checks again and retries)."""
    fields = asdict(entry)
    fields["loaded_at"] = entry.loaded_at.astimezone(dt.UTC).isoformat()
    return CommitProperties(
        custom_metadata={LEDGER_KEY: json.dumps(fields)},
        app_transactions=[Transaction(app_id(entry.sha256), version)],
        max_commit_retries=0,
    )
