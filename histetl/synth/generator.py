"""The generator: blocks of records with shapes and defects applied, and `write_dbn`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO

import numpy as np
import zstandard

from histetl.outputs import open_output
from histetl.synth.reference import _Reference
from histetl.synth.spec import (
    _BBO,
    _BOOK,
    _GRID_NS,
    _OHLCV,
    BLOCK_RECORDS,
    DAY_NS,
    F_LAST,
    I64,
    UNDEF_PRICE,
    UNDEF_TIMESTAMP,
    Defects,
    Records,
    Shapes,
    SynthResult,
    SynthSpec,
)
from histetl.synth.universe import _rng


class _Synth(_Reference):
    # .. blocks ...............................................................................

    def blocks(self) -> Iterator[Records]:
        generate = {
            "trades": self._trades,
            "mbo": self._mbo,
            **dict.fromkeys(_BOOK, self._book),
            "statistics": self._statistics,
            "status": self._status,
            "imbalance": self._imbalance,
            "definition": self._definition,
            **dict.fromkeys(_BBO, self._bbo),
            **dict.fromkeys(_OHLCV, self._ohlcv),
        }[self.schema]
        for k, a in enumerate(range(0, self.n, BLOCK_RECORDS)):
            b = min(a + BLOCK_RECORDS, self.n)
            rng = _rng(self.spec.seed, 2, self.stream, k)
            forced = self._local("shared_key_trades", a, b)
            rec, inst = generate(a, b, rng, forced)
            self._shape(rec, a, b)
            self._inject(rec, inst, a, b, _rng(self.spec.seed, 3, self.stream, k))
            yield self._insert(rec, a, b)

    def _shape(self, rec: Records, a: int, b: int) -> None:
        """Turn the planned rows into the unusual but valid shapes of `Shapes`."""
        rows = self._local("no_last_trade", a, b)
        if rows.size:
            rec["ts_event"][rows] = UNDEF_TIMESTAMP
            rec["price"][rows] = UNDEF_PRICE
            rec["size"][rows] = 0
            rec["side"][rows] = b"N"
        for name, action in (("sideless_book_updates", b"A"), ("book_clears", b"R")):
            rows = self._local(name, a, b)
            if rows.size == 0:
                continue
            rec["action"][rows] = action
            rec["side"][rows] = b"N"
            rec["price"][rows] = UNDEF_PRICE
            rec["size"][rows] = 0
            if "depth" in self.names:
                rec["depth"][rows] = 0
            if "order_id" in self.names:
                rec["order_id"][rows] = 0
            if action == b"R" and "bid_px_00" in self.names:  # the book is empty after a clear
                for name_ in self.names:
                    if name_[:7] in ("bid_px_", "ask_px_"):
                        rec[name_][rows] = UNDEF_PRICE
                    elif name_[:4] in ("bid_", "ask_"):
                        rec[name_][rows] = 0

    def _inject(self, rec: Records, inst: I64, a: int, b: int, rng: np.random.Generator) -> None:
        tick = self.tick[inst]
        for name in ("crossed_quotes", "locked_quotes"):
            rows = self._local(name, a, b)
            if rows.size == 0:
                continue
            bid = rec["bid_px_00"][rows]
            ask = rec["ask_px_00"][rows]
            level = np.where(bid != UNDEF_PRICE, bid, ask - tick[rows])
            cross = rng.integers(1, 4, rows.size) if name == "crossed_quotes" else 0
            rec["ask_px_00"][rows] = level
            rec["bid_px_00"][rows] = level + cross * tick[rows]
            for fld in ("bid_sz_00", "ask_sz_00", "bid_ct_00", "ask_ct_00"):
                if fld in self.names:
                    rec[fld][rows] = np.maximum(rec[fld][rows], 1)
            for fld in ("bid_pb_00", "ask_pb_00"):
                if fld in self.names:
                    rec[fld][rows] = np.where(
                        rec[fld][rows] == 0, self.venue_publishers[0], rec[fld][rows]
                    )
        rows = self._local("high_below_low", a, b)
        if rows.size:
            high = rec["high"][rows].copy()
            low = rec["low"][rows]
            rec["high"][rows] = low
            rec["low"][rows] = np.where(high == low, low + tick[rows], high)
        rows = self._local("zero_size", a, b)
        if rows.size:
            rec["size"][rows] = 0
        rows = self._local("missing_price", a, b)
        if rows.size:
            rec["close" if self.schema in _OHLCV else "price"][rows] = UNDEF_PRICE
        rows = self._local("bad_timestamp", a, b)
        if rows.size:
            self._bad_timestamps(rec, inst, rows, self._rank("bad_timestamp", a, rows), rng)
        rows = self._local("unmapped_instrument", a, b)
        if rows.size:
            ids = self.unmapped_base + self._rank("unmapped_instrument", a, rows)
            rec["instrument_id"][rows] = ids
            if self.schema == "definition":
                rec["raw_symbol"][rows] = np.char.add(b"UNMAPPED", ids.astype("S10"))

    def _bad_timestamps(
        self, rec: Records, inst: I64, rows: I64, rank: I64, rng: np.random.Generator
    ) -> None:
        can_before = self.on_first_day[inst[rows]]
        can_after = self.on_last_day[inst[rows]]
        coin = rng.random(rows.size) < 0.5
        before = can_before & (~can_after | coin)
        if self.grid_ns:
            new = np.where(
                before,
                self.start_ns - rank * self.grid_ns,
                self.end_ns + (rank - 1) * self.grid_ns,
            )
        else:
            jitter = (rng.random(rows.size) * (DAY_NS - 1)).astype(np.int64)
            new = np.where(before, self.start_ns - 1 - jitter, self.end_ns + jitter)
        old = rec[self.index][rows].astype(np.int64)
        rec[self.index][rows] = new
        if self.index == "ts_recv":  # keep ts_recv - ts_event
            rec["ts_event"][rows] = new - (old - rec["ts_event"][rows].astype(np.int64))

    def _insert(self, rec: Records, a: int, b: int) -> Records:
        dups = self._local("exact_duplicates", a, b)
        shared = self._local("shared_key_trades", a, b)
        if dups.size == 0 and shared.size == 0:
            return rec
        repeat = np.ones(b - a, dtype=np.int64)
        repeat[dups] = 2
        repeat[shared] = 2
        out = rec[np.repeat(np.arange(b - a), repeat)]
        if shared.size:
            inserted = np.sort(np.concatenate([dups, shared]))
            pred = shared + np.searchsorted(inserted, shared, side="left")
            follow = pred + 1
            out["flags"][pred] = out["flags"][pred] & ~np.uint8(F_LAST)
            size = out["size"][pred].astype(np.int64)
            price = out["price"][pred]
            side = out["side"][pred]
            bump = np.minimum(size + 1 + (size % 7), np.iinfo(np.uint32).max - 1)
            if self.schema == "trades":
                instrument_tick = self._tick_by_id(out["instrument_id"][pred])
                up = (side == b"B") & (np.arange(shared.size) % 2 == 0)
                down = (
                    (side == b"A")
                    & (price > 2 * instrument_tick)
                    & (np.arange(shared.size) % 2 == 0)
                )
                out["price"][follow] = (
                    price + np.where(up, instrument_tick, 0) - np.where(down, instrument_tick, 0)
                )
                out["size"][follow] = np.where(up | down, size, bump)
            else:
                out["size"][follow] = bump
        return out


def grid_capacity(spec: SynthSpec) -> int:
    """How many bars (OHLCV) or samples (BBO/CBBO) fit `spec`'s days and symbols: one per
    instrument and interval inside the trading sessions. With `records` equal to it, no interval
    of any session is missing."""
    if spec.schema not in _GRID_NS:
        raise ValueError(f"{spec.schema!r} is not on an interval grid")
    synth = _Synth(replace(spec, records=0, defects=Defects(), shapes=Shapes()))
    return int(synth.grid_offsets[-1])


def _is_zstd(path: Path) -> bool:
    return path.suffix == ".zst"


def write_dbn(spec: SynthSpec, path: Path | str, *, chunk_records: int = 1_000_000) -> SynthResult:
    """Generate `spec` and write it to `path` (zstd-compressed if the name ends in `.zst`);
    the file appears only when complete (`histetl.outputs.open_output`: OutputError if not).

    Records are generated in blocks of `BLOCK_RECORDS` and written once about `chunk_records`
    are buffered, so memory is bounded by max(chunk_records, BLOCK_RECORDS) records. The bytes
    written depend only on `spec`.
    """
    if chunk_records < 1:
        raise ValueError(f"chunk_records must be >= 1, got {chunk_records}")
    path = Path(path)
    synth = _Synth(spec)
    header = synth.metadata()
    with open_output(path) as raw:  # a temporary file renamed when complete
        if _is_zstd(path):
            compressor = zstandard.ZstdCompressor(level=3)
            with compressor.stream_writer(raw, closefd=False) as out:
                _write_records(out, header, synth.blocks(), chunk_records)
        else:
            _write_records(raw, header, synth.blocks(), chunk_records)
    return synth.result(path)


def _write_records(
    out: IO[bytes], header: bytes, blocks: Iterator[Records], chunk_records: int
) -> None:
    out.write(header)
    pending: list[Records] = []
    buffered = 0
    for block in blocks:
        pending.append(block)
        buffered += block.size
        if buffered >= chunk_records:
            _flush(out, pending)
            pending, buffered = [], 0
    _flush(out, pending)


def _flush(out: IO[bytes], pending: Sequence[Records]) -> None:
    for block in pending:
        out.write(block.view(np.uint8).data)
