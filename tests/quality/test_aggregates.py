"""The latency percentiles of histogram segments against a reference that expands every count;
partial sums folded while they stream."""

from __future__ import annotations

import math

import numpy as np

from histetl.quality.aggregates import COMPACT_AT, COMPACT_ROWS, Sums, bucket_edge, percentiles


def _reference(bucket: list[int], n: list[int]) -> dict[str, object]:
    """One segment the slow way: every record's bucket, sorted, the k-th one's upper edge."""
    each = np.sort(np.repeat(np.array(bucket), np.array(n)))
    out: dict[str, object] = {"records": len(each), "negative": int((each == -2).sum())}
    for q in (50, 90, 99):
        k = math.ceil(len(each) * q / 100) - 1
        out[f"p{q}_ns"] = bucket_edge(int(each[k]))
    return out


def test_percentiles_of_each_segment_equal_the_expanded_reference() -> None:
    rng = np.random.default_rng(7)
    segments = []
    for size in (1, 2, 5, 40, 150):
        buckets = np.sort(rng.choice(np.arange(-1, 200), size=size, replace=False))
        counts = rng.integers(1, 1_000, size=size)
        if size >= 5:  # negative latencies, many of them: the low percentiles fall there
            buckets[0], counts[0] = -2, 10_000
        segments.append((buckets, counts))
    segments.append((np.array([3, 4, 5]), np.array([1, 1, 1])))  # p50 of 3 records: the 2nd
    bucket = np.concatenate([b for b, _ in segments]).astype(np.int64)
    n = np.concatenate([c for _, c in segments]).astype(np.int64)
    starts = np.cumsum([0] + [len(b) for b, _ in segments[:-1]]).astype(np.int64)
    got = percentiles(bucket, n, starts)
    assert got == [_reference(b.tolist(), c.tolist()) for b, c in segments]
    assert [row["negative"] for row in got] == [0, 0, 10_000, 10_000, 10_000, 0]


def test_sums_fold_after_a_number_of_parts_or_of_rows() -> None:
    few = Sums(["hour"], {"n": "sum"})
    for i in range(COMPACT_AT + 1):  # one-row parts of 4 keys: folded once, 4 rows then 1 part
        few.add({"hour": np.array([i % 4]), "n": np.array([1])})
    assert (len(few.parts), few.rows) == (2, 5)
    big = Sums(["hour"], {"n": "sum"})
    keys = np.arange(COMPACT_ROWS // 2 + 1)
    for _ in range(3):  # parts of many keys: folded at the rows, long before COMPACT_AT parts
        big.add({"hour": keys, "n": np.ones(len(keys), dtype=np.int64)})
    assert (len(big.parts), big.rows) == (2, 2 * len(keys))
    assert big.compact()["n"].to_list() == [3] * len(keys)
