"""A background thread that runs an iterator a few items ahead of its consumer.

Used where the producer's heavy work releases the GIL (zstd decompression, numpy decoding),
so it overlaps the consumer's instead of adding to it. An exception in the producer is raised
in the consumer; leaving the `with` block stops and joins the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Raised:
    exc: BaseException


class Prefetch(Generic[T]):
    """Run `source` in a background thread, `depth` items ahead of its consumer."""

    _DONE = object()

    def __init__(self, source: Iterator[T], depth: int = 2, name: str = "histetl-prefetch") -> None:
        self._source = source
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)

    def _produce(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    return
            self._put(self._DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(_Raised(exc))

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __enter__(self) -> Iterator[T]:
        self._thread.start()
        return self._items()

    def _items(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item  # type: ignore[misc]

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
