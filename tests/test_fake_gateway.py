"""The fake Databento gateway, exercised with the real ``databento.Historical`` client.

These tests double as executable documentation of the client's behaviour (databento 0.87).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import databento
import databento_dbn as dbn
import numpy as np
import pytest
from databento.common.error import (
    BentoClientError,
    BentoError,
    BentoHttpError,
    BentoServerError,
    BentoWarning,
)

from tests.support.fake_gateway import (
    FakeGateway,
    Framing,
    Scripted,
    close_leaked_writer,
    release_dbnstore,
    zstd_frame_complete,
)

DATASET = "XNAS.ITCH"
DAY0 = 1_704_153_600 * 10**9  # 2024-01-02T00:00:00Z
MINUTE = 60 * 10**9
IDS = {"AAPL": 15, "MSFT": 16}
N_TRADES = 4000  # 2 minutes apart -> 2024-01-02 .. 2024-01-07 (~70 kB zstd)


def _mapping(raw_symbol: str, instrument_id: int) -> SimpleNamespace:
    interval = SimpleNamespace(
        start_date=dt.date(2024, 1, 2), end_date=dt.date(2024, 1, 9), symbol=str(instrument_id)
    )
    return SimpleNamespace(raw_symbol=raw_symbol, intervals=[interval])


def _header(schema: dbn.Schema) -> bytes:
    metadata = dbn.Metadata(
        dataset=DATASET,
        start=DAY0,
        end=DAY0 + 7 * 1440 * MINUTE,
        stype_in=dbn.SType.RAW_SYMBOL,
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=schema,
        symbols=sorted(IDS),
        mappings=[_mapping(sym, iid) for sym, iid in IDS.items()],
    )
    return bytes(metadata)


def make_trades(n: int = N_TRADES) -> tuple[bytes, np.ndarray]:
    arr = np.zeros(n, dtype=dbn.TradeMsg._dtypes)
    arr["length"] = arr.dtype.itemsize // 4
    arr["rtype"] = 0  # mbp-0
    arr["publisher_id"] = 2
    arr["instrument_id"] = np.where(np.arange(n) % 2 == 0, IDS["AAPL"], IDS["MSFT"])
    arr["ts_recv"] = DAY0 + np.arange(n, dtype=np.uint64) * 2 * MINUTE
    arr["ts_event"] = arr["ts_recv"] - 1_000
    arr["price"] = np.random.default_rng(7).integers(1, 10**12, n)
    arr["size"] = np.arange(n)
    arr["action"] = b"T"
    arr["side"] = b"N"
    arr["sequence"] = np.arange(n)
    return _header(dbn.Schema.TRADES) + arr.tobytes(), arr


def make_ohlcv_1d() -> tuple[bytes, np.ndarray]:
    arr = np.zeros(6, dtype=dbn.OHLCVMsg._dtypes)
    arr["length"] = arr.dtype.itemsize // 4
    arr["rtype"] = 0x23  # ohlcv-1d
    arr["instrument_id"] = IDS["AAPL"]
    arr["ts_event"] = DAY0 + np.arange(6, dtype=np.uint64) * 1440 * MINUTE
    arr["open"] = arr["high"] = arr["low"] = arr["close"] = 10**11
    arr["volume"] = np.arange(6) + 1
    return _header(dbn.Schema.OHLCV_1D) + arr.tobytes(), arr


@pytest.fixture(scope="module")
def trades() -> tuple[bytes, np.ndarray]:
    return make_trades()


@pytest.fixture
def gw(monkeypatch: pytest.MonkeyPatch, trades: tuple[bytes, np.ndarray]) -> Iterator[FakeGateway]:
    with FakeGateway(cost_per_record=0.25) as gateway:
        # requests reads REQUESTS_CA_BUNDLE (then CURL_CA_BUNDLE) per request; the environment
        # here already sets REQUESTS_CA_BUNDLE to the system bundle, so it must be overridden.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(gateway.ca_file))
        gateway.add_data(DATASET, "trades", trades[0])
        yield gateway
        assert not gateway.errors, gateway.errors


@pytest.fixture
def client(gw: FakeGateway) -> databento.Historical:
    return databento.Historical(key=gw.api_key, gateway=gw.url)


def _in_range(arr: np.ndarray, start: int, end: int, field: str = "ts_recv") -> np.ndarray:
    return arr[(arr[field] >= start) & (arr[field] < end)]


# ------------------------------------------------------------------------------------------
# happy path
# ------------------------------------------------------------------------------------------


def test_gateway_url_is_forced_to_https(gw: FakeGateway) -> None:
    plain = gw.url.replace("https://", "http://")
    assert databento.Historical(key=gw.api_key, gateway=plain).gateway == gw.url
    assert databento.Historical(key=gw.api_key, gateway=gw.url).gateway == gw.url


def test_get_range_to_path_serves_exactly_the_requested_records(
    gw: FakeGateway, client: databento.Historical, trades: tuple[bytes, np.ndarray], tmp_path: Path
) -> None:
    path = tmp_path / "aapl.dbn.zst"
    store = client.timeseries.get_range(
        DATASET,
        schema="trades",
        symbols=["AAPL"],
        stype_in="raw_symbol",
        start="2024-01-03",
        end="2024-01-05",
        path=path,
    )
    release_dbnstore(store)

    # get_range always asks for zstd and writes the compressed bytes verbatim to `path`.
    raw = path.read_bytes()
    assert raw[:4] == b"\x28\xb5\x2f\xfd"
    assert zstd_frame_complete(path)

    stored = databento.DBNStore.from_file(path)
    try:
        got = stored.to_ndarray()
        start, end = DAY0 + 1440 * MINUTE, DAY0 + 3 * 1440 * MINUTE
        want = _in_range(trades[1], start, end)
        want = want[want["instrument_id"] == IDS["AAPL"]]
        assert len(got) == len(want) == 720
        assert got.tobytes() == want.tobytes()
        assert stored.compression == dbn.Compression.ZSTD
        assert stored.metadata.start == start
        assert stored.metadata.end == end
        assert stored.symbols == ["AAPL"]
        assert set(stored.mappings) == {"AAPL"}
        assert stored.schema == dbn.Schema.TRADES
    finally:
        release_dbnstore(stored)

    # One POST, nothing implicit; key sent as HTTP basic-auth user with an empty password.
    [req] = gw.requests
    assert (req.method, req.endpoint, req.path) == (
        "POST",
        "timeseries.get_range",
        "/v0/timeseries.get_range",
    )
    assert req.auth_user == gw.api_key
    assert gw.api_key not in repr(req)
    assert req.params == {
        "dataset": DATASET,
        "start": "2024-01-03",
        "end": "2024-01-05",
        "symbols": "AAPL",
        "schema": "trades",
        "stype_in": "raw_symbol",
        "stype_out": "instrument_id",
        "encoding": "dbn",
        "compression": "zstd",
    }
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert req.headers["user-agent"].startswith("Databento/")


def test_get_range_in_memory_all_symbols_instrument_ids_and_limit(
    gw: FakeGateway, client: databento.Historical, trades: tuple[bytes, np.ndarray]
) -> None:
    start, end = DAY0 + 10 * MINUTE, DAY0 + 30 * MINUTE  # int ns are sent as-is
    store = client.timeseries.get_range(DATASET, start=start, end=end)
    assert gw.requests[-1].params["symbols"] == "ALL_SYMBOLS"
    assert store.to_ndarray().tobytes() == _in_range(trades[1], start, end).tobytes()

    store = client.timeseries.get_range(
        DATASET, start=start, end=end, symbols=[16], stype_in="instrument_id", limit=3
    )
    got = store.to_ndarray()
    assert list(got["instrument_id"]) == [16, 16, 16]
    assert store.limit == 3

    expected = gw.expected_records(DATASET, "trades", "2024-01-02", "2024-01-03", ["MSFT"])
    assert len(expected) == 360


def test_ohlcv_filters_on_ts_event(gw: FakeGateway, client: databento.Historical) -> None:
    data, arr = make_ohlcv_1d()
    gw.add_data(DATASET, "ohlcv-1d", data)
    store = client.timeseries.get_range(
        DATASET, schema="ohlcv-1d", symbols="AAPL", start="2024-01-03", end="2024-01-06"
    )
    got = store.to_ndarray()
    assert got.tobytes() == arr[1:4].tobytes()


def test_cost_record_count_and_billable_size(gw: FakeGateway, client: databento.Historical) -> None:
    kwargs: dict[str, Any] = {
        "dataset": DATASET,
        "start": "2024-01-02",
        "end": "2024-01-03",
        "symbols": ["AAPL"],
    }
    assert client.metadata.get_record_count(**kwargs) == 360
    assert client.metadata.get_cost(**kwargs) == pytest.approx(360 * 0.25)
    assert (
        client.metadata.get_billable_size(**kwargs) == 360 * np.dtype(dbn.TradeMsg._dtypes).itemsize
    )
    assert [r.endpoint for r in gw.requests] == [
        "metadata.get_record_count",
        "metadata.get_cost",
        "metadata.get_billable_size",
    ]
    assert all(r.method == "POST" and r.auth_user == gw.api_key for r in gw.requests)
    # get_cost/get_billable_size also send stype_out; get_record_count does not.
    assert "stype_out" not in gw.requests[0].params
    assert gw.requests[1].params["stype_out"] == "instrument_id"


def test_concurrent_requests(gw: FakeGateway, client: databento.Historical) -> None:
    results: list[int] = []

    def work() -> None:
        results.append(
            client.metadata.get_record_count(DATASET, start="2024-01-02", end="2024-01-03")
        )

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [720] * 8


# ------------------------------------------------------------------------------------------
# HTTP errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scripted", "exc_type", "message"),
    [
        (
            Scripted(status=429, headers={"Retry-After": "1"}),
            BentoClientError,
            "rate_limit_exceeded\nToo many requests. Please slow down.",
        ),
        (Scripted(status=500), BentoServerError, "internal_error\nInternal server error."),
        (
            Scripted(status=401),
            BentoClientError,
            "auth_authentication_failed\nAuthentication failed.",
        ),
        (Scripted(status=422, body={"detail": "no such thing"}), BentoClientError, "no such thing"),
        (Scripted(status=503, body="<html>down</html>"), BentoServerError, None),
        # for 504 (and 408) the client replaces a plain-string detail with its own text
        (
            Scripted(status=504, body={"detail": "upstream"}),
            BentoServerError,
            "The remote gateway timed out.",
        ),
    ],
    ids=["429", "500", "401", "422", "503-html", "504"],
)
def test_http_errors_surface_as_client_exceptions(
    gw: FakeGateway,
    client: databento.Historical,
    tmp_path: Path,
    scripted: Scripted,
    exc_type: type[BentoHttpError],
    message: str | None,
) -> None:
    gw.script("timeseries.get_range", scripted)
    path = tmp_path / "out.dbn.zst"
    with pytest.raises(exc_type) as excinfo:
        client.timeseries.get_range(DATASET, start="2024-01-02", end="2024-01-03", path=path)
    exc = excinfo.value
    assert exc.http_status == scripted.status
    assert exc.message == message
    assert str(exc) == f"{scripted.status} {message or '<empty message>'}"
    # Response headers (a case-insensitive requests structure) are kept on the exception.
    assert exc.headers.get("retry-after") == scripted.headers.get("Retry-After")
    assert exc.request_id is None  # would be the `request-id` response header
    assert not path.exists()  # HTTP status is checked before the output file is created
    assert len(gw.requests) == 1  # the client never retries
    for text in (str(exc), repr(exc), str(exc.http_body), str(exc.headers)):
        assert gw.api_key not in text


def test_wrong_key_is_rejected_with_401(gw: FakeGateway) -> None:
    wrong = databento.Historical(key="db-" + "x" * 29, gateway=gw.url)
    with pytest.raises(BentoClientError) as excinfo:
        wrong.metadata.get_cost(DATASET, start="2024-01-02", end="2024-01-03")
    assert excinfo.value.http_status == 401
    assert excinfo.value.json_body is not None
    assert excinfo.value.json_body["detail"]["case"] == "auth_authentication_failed"
    assert gw.requests[0].auth_user == "db-" + "x" * 29
    assert gw.requests[0].status == 401


def test_scripts_are_consumed_in_order_then_normal(
    gw: FakeGateway, client: databento.Historical
) -> None:
    gw.script("metadata.get_record_count", Scripted(status=429), Scripted(status=500))
    statuses = []
    for _ in range(3):
        try:
            statuses.append(client.metadata.get_record_count(DATASET, start="2024-01-02"))
        except BentoHttpError as exc:
            statuses.append(exc.http_status)
    assert statuses == [429, 500, 720]  # date-only start without end -> one day
    assert [r.scripted for r in gw.requests] == [True, True, False]
    assert gw.pending_scripts("metadata.get_record_count") == 0


def test_fake_validates_requests(gw: FakeGateway, client: databento.Historical) -> None:
    with pytest.raises(BentoClientError) as excinfo:
        client.metadata.get_record_count("GLBX.MDP3", start="2024-01-02", end="2024-01-03")
    assert excinfo.value.http_status == 422
    with pytest.raises(BentoClientError) as excinfo:
        client.metadata.get_record_count(DATASET, start="2024-01-03", end="2024-01-02")
    assert excinfo.value.http_status == 422


def test_backend_warning_header_becomes_an_exception_under_error_filter(
    gw: FakeGateway, client: databento.Historical, tmp_path: Path
) -> None:
    # The client turns each entry of the JSON `X-Warning` response header into warnings.warn()
    # *before* streaming: with warnings as errors, the download is aborted.
    header = json.dumps(["Warning: symbols could not be resolved"])
    gw.script("timeseries.get_range", Scripted(headers={"X-Warning": header}))
    path = tmp_path / "w.dbn.zst"
    with warnings.catch_warnings():
        warnings.simplefilter("error", BentoWarning)
        with pytest.raises(BentoWarning, match="symbols could not be resolved"):
            client.timeseries.get_range(DATASET, start="2024-01-02", end="2024-01-03", path=path)
    assert not path.exists()


# ------------------------------------------------------------------------------------------
# truncated bodies
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_truncated_stream_raises_bento_error_and_leaves_partial_file(
    gw: FakeGateway, client: databento.Historical, tmp_path: Path, framing: Framing
) -> None:
    gw.script("timeseries.get_range", Scripted(truncate_after=30_000, framing=framing))
    path = tmp_path / "cut.dbn.zst"
    with pytest.raises(BentoError, match=r"^Error streaming response: ") as excinfo:
        client.timeseries.get_range(DATASET, start="2024-01-02", end="2024-01-09", path=path)
    exc = excinfo.value
    assert type(exc) is BentoError  # not a BentoHttpError: no http_status
    assert gw.api_key not in str(exc)
    # The client leaks the open output file; closing it flushes the partial bytes.
    assert close_leaked_writer(exc) == 1
    assert 0 < path.stat().st_size <= 30_000
    assert not zstd_frame_complete(path)
    # ...and because it opens with mode "x", retrying into the same path fails.
    with pytest.raises(FileExistsError):
        client.timeseries.get_range(DATASET, start="2024-01-02", end="2024-01-09", path=path)


def test_cleanly_closed_short_body_is_a_silent_short_file(
    gw: FakeGateway, client: databento.Historical, tmp_path: Path, trades: tuple[bytes, np.ndarray]
) -> None:
    # No Content-Length, no chunking, TLS close_notify after 70 000 of ~70 800 bytes: the client
    # cannot tell, get_range "succeeds", and the DBN decodes to a *prefix* of the records
    # without any warning. Only the unfinished zstd frame (or a record count) reveals it.
    gw.script("timeseries.get_range", Scripted(truncate_after=70_000, framing="close"))
    path = tmp_path / "short.dbn.zst"
    store = client.timeseries.get_range(DATASET, start="2024-01-02", end="2024-01-09", path=path)
    try:
        got = store.to_ndarray()
    finally:
        release_dbnstore(store)
    assert path.stat().st_size == 70_000
    assert 0 < len(got) < len(trades[1])
    assert got.tobytes() == trades[1][: len(got)].tobytes()
    assert not zstd_frame_complete(path)
    assert client.metadata.get_record_count(DATASET, start="2024-01-02", end="2024-01-09") == len(
        trades[1]
    )

    # A cut inside the metadata header fails in DBNStore.from_file with a databento_dbn error.
    gw.script("timeseries.get_range", Scripted(truncate_after=50, framing="close"))
    with pytest.raises(Exception, match="decoding error") as excinfo:
        client.timeseries.get_range(DATASET, start="2024-01-02", end="2024-01-09")
    assert type(excinfo.value).__module__ == "databento_dbn"
    assert not isinstance(excinfo.value, BentoError)


# ------------------------------------------------------------------------------------------
# CA trust from a fresh interpreter (what a `histetl run` subprocess would see)
# ------------------------------------------------------------------------------------------


def test_env_makes_sync_and_async_clients_trust_the_fake(gw: FakeGateway, tmp_path: Path) -> None:
    # aiohttp (used by *_async) builds its SSL context when imported, from SSL_CERT_FILE;
    # requests uses REQUESTS_CA_BUNDLE at request time. gw.env() sets both.
    script = textwrap.dedent(
        """
        import asyncio, os, sys, databento
        client = databento.Historical(key=os.environ["K"], gateway=sys.argv[1])
        n = client.metadata.get_record_count("XNAS.ITCH", start="2024-01-02", end="2024-01-03")
        store = asyncio.run(client.timeseries.get_range_async(
            "XNAS.ITCH", start="2024-01-02", end="2024-01-03"))
        print(n, len(store.to_ndarray()))
        """
    )
    env = {**os.environ, **gw.env(), "K": gw.api_key}
    proc = subprocess.run(
        [sys.executable, "-c", script, gw.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["720", "720"]
    assert [r.method for r in gw.requests] == ["POST", "POST"]
