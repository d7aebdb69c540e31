"""histetl.targets.delta.layout: where a lake is, and its tables' partition, schema and key."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from histetl.errors import ConfigError
from histetl.schemas import table_spec
from histetl.targets.base import TableTarget
from histetl.targets.delta.layout import (
    PARTITION,
    delta_location,
    lake_key,
    lake_schema,
    to_lake_arrow,
)


def _trades() -> TableTarget:
    spec = table_spec("trades")
    return TableTarget(spec.table, spec.arrow_schema, spec.key, spec.index_ts)


@pytest.mark.parametrize(
    ("uri", "location"),
    [
        ("delta:///lake", "lake"),
        ("delta:////data/lake", "/data/lake"),
        ("delta+s3://bucket/prefix", "s3://bucket/prefix"),
    ],
)
def test_delta_location_of_each_form(uri: str, location: str) -> None:
    assert delta_location(uri) == location


def test_delta_location_of_another_form_names_the_forms() -> None:
    with pytest.raises(ConfigError, match="bad Delta Lake URI 'delta://lake'") as caught:
        delta_location("delta://lake")
    assert "delta+s3://bucket/prefix" in (caught.value.hint or "")


def test_lake_key_is_the_primary_key_with_exact_nanoseconds() -> None:
    target = _trades()
    key = lake_key(target)
    assert key[0] == target.key[0] + "_ns"
    assert key[1:] == [c + "_ns" if c.startswith("ts_") else c for c in target.key[1:]]


def test_to_lake_arrow_adds_the_utc_date_of_the_index_timestamp() -> None:
    target = _trades()
    ts = target.time_column
    last_ns_of_a_day = int(dt.datetime(2023, 12, 14, tzinfo=dt.UTC).timestamp()) * 10**9 - 1
    columns = {
        f.name: pa.nulls(2, f.type)
        if f.name != ts
        else pa.array([last_ns_of_a_day, last_ns_of_a_day + 1], pa.timestamp("ns", tz="UTC"))
        for f in target.schema
    }
    table = to_lake_arrow(pa.table(columns, schema=target.schema), target)
    assert table.schema.equals(lake_schema(target))
    assert table.column(PARTITION).to_pylist() == [dt.date(2023, 12, 13), dt.date(2023, 12, 14)]
    assert table.column(ts + "_ns").to_pylist() == [last_ns_of_a_day, last_ns_of_a_day + 1]
