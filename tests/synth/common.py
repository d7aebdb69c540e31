"""What the synth tests share: databento's reader of a written file and the schema families."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import databento
import databento_dbn as dbn
import numpy as np
import pytest

# databento's DataFrame path trips a pandas deprecation warning, and DBNStore.from_file leaves
# its file handles to the garbage collector; neither is ours to fix.
DATABENTO_WARNINGS = [
    pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <_io.FileIO:pytest.PytestUnraisableExceptionWarning"
    ),
]

UNDEF_PRICE = dbn.UNDEF_PRICE
UNDEF_TS = dbn.UNDEF_TIMESTAMP
OHLCV = ("ohlcv-1s", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d", "ohlcv-eod")
BBO = ("bbo-1s", "bbo-1m", "cbbo-1s", "cbbo-1m")
BOOK = ("tbbo", "tcbbo", "mbp-1", "mbp-10", "cmbp-1")
QUOTES = (*BOOK, *BBO)
TRADE_LIKE = ("trades", *BOOK)
SHARED_KEY = ("trades", "tbbo", "mbp-1")
GRID_S = {"ohlcv-1s": 1, "ohlcv-1m": 60, "ohlcv-1h": 3600, "ohlcv-1d": 86400, "ohlcv-eod": 86400}
GRID_S |= {"bbo-1s": 1, "bbo-1m": 60, "cbbo-1s": 1, "cbbo-1m": 60}
# small record counts that fit every schema's grid in the default two days
SMALL = {"ohlcv-1h": 40, "ohlcv-1d": 2, "ohlcv-eod": 2}


def small(schema: str) -> int:
    return SMALL.get(schema, 300)


def read(path: Path) -> tuple[Any, np.ndarray]:
    store = databento.DBNStore.from_file(path)
    return store, store.to_ndarray()


def mapped_ids(store: Any) -> set[int]:
    return {int(i["symbol"]) for ivs in store.metadata.mappings.values() for i in ivs}
