"""The fake gateway (serving 3 days of ES.c.0 trades, as in tests/pipeline/test_run.py), a
`DatabentoApi` pointed at it that records its sleeps, and the chunks of a small job."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from histetl.jobs import Chunk, DatabentoSettings, JobSpec, RetrySettings, plan_chunks
from histetl.source.databento.client import DatabentoApi
from tests.pipeline.test_run import DATASET, Sleeps, gateway, gw, trades
from tests.support.fake_gateway import FakeGateway

__all__ = ["gateway", "gw", "trades"]  # fixtures, imported to be registered here

JOB: dict[str, Any] = {
    "name": "es_trades",
    "dataset": DATASET,
    "schema": "trades",
    "symbols": ["ES.c.0"],
    "stype_in": "continuous",
    "start": dt.date(2023, 12, 14),
    "end": dt.date(2023, 12, 17),
    "chunk_days": 1,
}
RECORDS = [1577, 1423, 0]  # what the fake serves for each day of JOB


def job(**overrides: Any) -> JobSpec:
    return JobSpec.model_validate({**JOB, **overrides})


def chunks(**overrides: Any) -> list[Chunk]:
    return plan_chunks(job(**overrides))


def make_api(
    gw: FakeGateway, sleeps: Sleeps, max_attempts: int = 3, max_wait_s: float = 5
) -> DatabentoApi:
    settings = DatabentoSettings(
        gateway=gw.url, retry=RetrySettings(max_attempts=max_attempts, max_wait_s=max_wait_s)
    )
    return DatabentoApi(gw.api_key, settings, sleep=sleeps)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def api(gw: FakeGateway, sleeps: Sleeps) -> DatabentoApi:
    """3 attempts, backoff at most 5 s; the sleeps are recorded, not slept."""
    return make_api(gw, sleeps)
