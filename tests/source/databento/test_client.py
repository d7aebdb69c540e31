"""histetl.source.databento.client: the real databento client against the fake gateway; what is
retried (429 after Retry-After, 408/5xx, cut-off downloads), what fails at once (4xx) with the
server's words and a hint, and the API key kept out of every message."""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from pathlib import Path

import pytest

from histetl.errors import ConfigError, SourceError
from histetl.jobs import DatabentoSettings, RetrySettings
from histetl.source.databento.client import DatabentoApi, api_key, connection_reason
from histetl.source.databento.download import inspect_download
from tests.pipeline.test_run import Sleeps
from tests.source.databento.conftest import RECORDS, chunks, make_api
from tests.support.fake_gateway import FakeGateway, Scripted


def endpoints(gw: FakeGateway) -> list[str]:
    return [r.endpoint for r in gw.requests]


def test_api_key_comes_from_the_named_variable_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "  db-abc \n")
    assert api_key(DatabentoSettings(key_env_var="MY_KEY")) == "db-abc"


@pytest.mark.parametrize("value", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_api_key_when_missing_says_which_variable_to_export(
    value: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv("MY_KEY", raising=False)
    else:
        monkeypatch.setenv("MY_KEY", value)
    with pytest.raises(ConfigError) as caught:
        api_key(DatabentoSettings(key_env_var="MY_KEY"))
    assert caught.value.exit_code == 2
    assert caught.value.where == "databento.key_env_var"
    assert caught.value.what == "environment variable MY_KEY is not set"
    assert (caught.value.hint or "").startswith("export MY_KEY=<your Databento API key>")


def test_repr_shows_the_gateway_never_the_key(api: DatabentoApi, gw: FakeGateway) -> None:
    assert repr(api) == f"DatabentoApi(gateway={gw.url!r})"
    assert gw.api_key not in repr(api)


def test_record_count_and_cost_are_the_apis(api: DatabentoApi, gw: FakeGateway) -> None:
    first, _, empty = chunks()
    assert api.record_count(first) == RECORDS[0]
    assert api.cost(first) == pytest.approx(RECORDS[0] * 0.0001)
    assert api.record_count(empty) == 0
    (request,) = gw.requests_for("metadata.get_cost")
    assert (request.params["schema"], request.params["symbols"]) == ("trades", "ES.c.0")
    assert request.params["start"].startswith("2023-12-14")


def test_download_streams_a_verified_copy(api: DatabentoApi, tmp_path: Path) -> None:
    path = tmp_path / "x.dbn.zst"
    check = api.download(chunks()[0], path, RECORDS[0])
    assert (check.records, check.complete) == (RECORDS[0], True)
    assert inspect_download(path) == check


@pytest.mark.parametrize(
    ("retry_after", "slept"),
    [
        ("2", 2.0),
        ("600", 5.0),  # capped by max_wait_s
        (email.utils.format_datetime(dt.datetime(2020, 1, 1, tzinfo=dt.UTC), usegmt=True), 0.0),
    ],
    ids=["seconds", "capped", "http-date-in-the-past"],
)
def test_429_waits_what_retry_after_says_then_succeeds(
    retry_after: str, slept: float, api: DatabentoApi, gw: FakeGateway, sleeps: Sleeps
) -> None:
    gw.script(
        "metadata.get_record_count", Scripted(status=429, headers={"Retry-After": retry_after})
    )
    assert api.record_count(chunks()[0]) == RECORDS[0]
    assert sleeps == [slept]
    assert endpoints(gw) == ["metadata.get_record_count"] * 2


def test_5xx_backs_off_and_gives_up_after_max_attempts_naming_the_request(
    api: DatabentoApi, gw: FakeGateway, sleeps: Sleeps
) -> None:
    gw.script("metadata.get_cost", *[Scripted(status=503)] * 3)
    with pytest.raises(SourceError) as caught:
        api.cost(chunks()[0])
    error = caught.value
    assert error.where == "cost of es_trades trades 2023-12-14..2023-12-15"
    assert error.what.startswith("HTTP 503 from the Databento API: ")
    assert error.what.endswith("(gave up after 3 attempts)")
    assert "rerun later" in (error.hint or "")
    assert len(sleeps) == 2
    assert all(0 < s <= 5 for s in sleeps)
    assert endpoints(gw) == ["metadata.get_cost"] * 3


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (401, "check the API key in $DATABENTO_API_KEY"),
        (402, "check the billing details"),
        (403, "the key is not allowed this request"),
        (404, "check dataset, schema, symbols, stype_in and the dates"),
        (422, "check dataset, schema, symbols, stype_in and the dates"),
    ],
)
def test_4xx_fails_at_once_with_the_servers_words_and_what_to_check(
    status: int, hint: str, api: DatabentoApi, gw: FakeGateway, sleeps: Sleeps
) -> None:
    gw.script(
        "metadata.get_record_count",
        Scripted(status=status, body={"detail": {"case": "bad", "message": "Not that."}}),
    )
    with pytest.raises(SourceError) as caught:
        api.record_count(chunks()[0])
    assert caught.value.what == f"HTTP {status} from the Databento API: bad: Not that."
    assert (caught.value.hint or "").startswith(hint)
    assert sleeps == []
    assert endpoints(gw) == ["metadata.get_record_count"]


def test_a_plain_text_detail_is_the_message_and_an_echoed_key_is_masked(
    api: DatabentoApi, gw: FakeGateway
) -> None:
    gw.script(
        "metadata.get_record_count",
        Scripted(status=400, body={"detail": f"symbol unknown for key {gw.api_key}"}),
    )
    with pytest.raises(SourceError) as caught:
        api.record_count(chunks()[0])
    assert caught.value.what.startswith("HTTP 400 from the Databento API: symbol unknown for key ")
    assert gw.api_key not in caught.value.message
    assert "***" in caught.value.message


def test_a_cut_off_download_is_retried_until_whole(
    api: DatabentoApi, gw: FakeGateway, sleeps: Sleeps, tmp_path: Path
) -> None:
    gw.script("timeseries.get_range", Scripted(truncate_after=3000, framing="close"))
    path = tmp_path / "x.dbn.zst"
    check = api.download(chunks()[0], path, RECORDS[0])
    assert (check.records, check.complete) == (RECORDS[0], True)
    assert endpoints(gw) == ["timeseries.get_range"] * 2
    assert len(sleeps) == 1


def test_a_download_with_fewer_records_than_counted_is_never_accepted(
    api: DatabentoApi, gw: FakeGateway, tmp_path: Path
) -> None:
    path = tmp_path / "x.dbn.zst"
    with pytest.raises(SourceError) as caught:
        api.download(chunks()[0], path, RECORDS[0] + 1)
    assert caught.value.what == (
        f"incomplete download ({RECORDS[0]} records downloaded, the API counted "
        f"{RECORDS[0] + 1}) (gave up after 3 attempts)"
    )
    assert not path.exists()
    assert endpoints(gw) == ["timeseries.get_range"] * 3


def test_a_download_that_cannot_be_written_fails_at_once_naming_the_file(
    api: DatabentoApi, sleeps: Sleeps, tmp_path: Path
) -> None:
    path = tmp_path / "missing-folder" / "x.dbn.zst"
    with pytest.raises(SourceError) as caught:
        api.download(chunks()[0], path, RECORDS[0])
    assert caught.value.what == f"cannot write the download: The file `{path}` is not writable."
    assert caught.value.where == "download of es_trades trades 2023-12-14..2023-12-15"
    assert caught.value.hint == "check free space and permissions of raw_dir"
    assert sleeps == []  # not retried


def test_an_unreachable_gateway_is_a_connection_error_retried_then_given_up(
    gw: FakeGateway, tmp_path: Path
) -> None:
    sleeps = Sleeps()
    url = gw.url
    gw.close()  # nothing listens there any more
    api = make_api(gw, sleeps, max_attempts=2)
    assert api.gateway == url
    with pytest.raises(SourceError) as caught:
        api.record_count(chunks()[0])
    port = url.rsplit(":", 1)[1]
    assert caught.value.what == (
        f"connection error: connection refused by 127.0.0.1:{port} (gave up after 2 attempts)"
    )
    assert len(sleeps) == 1


def test_connection_reason_is_the_one_reason_inside_requests_nested_message() -> None:
    import requests

    with pytest.raises(requests.ConnectionError) as caught:
        requests.get("http://histetl-test.invalid/", timeout=5)  # .invalid never resolves
    assert connection_reason(str(caught.value)) == "cannot resolve histetl-test.invalid (DNS)"
    assert connection_reason("something else entirely") == "something else entirely"


@pytest.mark.parametrize("endpoint", ["metadata.get_record_count", "timeseries.get_range"])
def test_a_gateway_that_stops_answering_is_given_up_on_after_timeout_s(
    gw: FakeGateway, tmp_path: Path, endpoint: str
) -> None:
    """An API that accepts the request and then says nothing: each attempt ends after
    `databento.timeout_s` (the client's own default is 100 s), and is retried."""
    gw.script(endpoint, Scripted(delay=2), Scripted(delay=2))
    sleeps = Sleeps()
    settings = DatabentoSettings(
        gateway=gw.url, timeout_s=0.5, retry=RetrySettings(max_attempts=2, max_wait_s=1)
    )
    api = DatabentoApi(gw.api_key, settings, sleep=sleeps)

    def request() -> object:
        if endpoint == "timeseries.get_range":
            return api.download(chunks()[0], tmp_path / "x.dbn.zst", RECORDS[0])
        return api.record_count(chunks()[0])

    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        request()
    # two attempts of 0.5 s (the backoff is recorded, not slept); unbounded, they take 2 s each
    assert time.monotonic() - started < 3.5
    port = gw.url.rsplit(":", 1)[1]
    assert caught.value.what == (
        f"connection error: no answer from 127.0.0.1:{port} (timed out) (gave up after 2 attempts)"
    )
    assert len(sleeps) == 1
    assert endpoints(gw) == [endpoint] * 2
    assert not (tmp_path / "x.dbn.zst").exists()
