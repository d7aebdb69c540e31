"""DBN facts that need no decoder: the framing of a file, the supported schemas and their record
layouts.

Light on purpose (no numpy, Arrow or databento_dbn): the CLI's option lists and the ledger
pre-check read these names without loading the decode stage.
"""

from __future__ import annotations

import struct

# Framing: a file is a prelude (b"DBN", version, metadata length), the metadata, then records
# whose first byte is their length in 4-byte words; `.dbn.zst` wraps that in zstd frames.
PRELUDE = struct.Struct("<3sBI")
DBN_MAGIC = b"DBN"
RECORD_LENGTH_UNIT = 4
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_SKIPPABLE = 0x184D2A50  # magic of skippable frames (the low 4 bits are free)

# schema -> (record class name, accepted rtypes). tbbo and mbp-1 share a layout (rtype 1).
RECORDS: dict[str, tuple[str, tuple[int, ...]]] = {
    "ohlcv-1s": ("OHLCVMsg", (32, 17)),
    "ohlcv-1m": ("OHLCVMsg", (33, 17)),
    "ohlcv-1h": ("OHLCVMsg", (34, 17)),
    "ohlcv-1d": ("OHLCVMsg", (35, 17)),
    "ohlcv-eod": ("OHLCVMsg", (36,)),
    "trades": ("TradeMsg", (0,)),
    "tbbo": ("MBP1Msg", (1,)),
    "mbp-1": ("MBP1Msg", (1,)),
    "bbo-1s": ("BBOMsg", (195,)),
    "bbo-1m": ("BBOMsg", (196,)),
    "statistics": ("StatMsg", (24,)),
    "definition": ("InstrumentDefMsg", (19,)),
    "status": ("StatusMsg", (18,)),
    "imbalance": ("ImbalanceMsg", (20,)),
    # Cheap extras: the same flat layouts, so the same decoder serves them.
    "mbo": ("MBOMsg", (160,)),
    "mbp-10": ("MBP10Msg", (10,)),
    "cmbp-1": ("CMBP1Msg", (177,)),
    "cbbo-1s": ("CBBOMsg", (192,)),
    "cbbo-1m": ("CBBOMsg", (193,)),
    "tcbbo": ("CMBP1Msg", (194,)),  # databento_dbn: TCBBOMsg is CMBP1Msg
}
SUPPORTED_SCHEMAS: tuple[str, ...] = tuple(RECORDS)


def table_name(schema: str) -> str:
    """The canonical table of a schema: its name with - as _ (mbp-1 -> mbp_1)."""
    return schema.replace("-", "_")
