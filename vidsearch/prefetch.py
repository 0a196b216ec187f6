"""Run an iterator in a background thread, a bounded number of items ahead (decoding overlaps encoding)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")


def prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """Run `items` in a background thread, `depth` items ahead, so decoding overlaps encoding."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            try:
                for item in items:
                    buffer.put((item, None))
                    if stop.is_set():
                        return
            finally:
                if hasattr(items, "close"):  # a generator stopped early runs its cleanup now, in this thread, not at GC
                    items.close()
        except BaseException as exc:  # handed to the consumer, which re-raises it
            buffer.put((None, exc))
        buffer.put((done, None))

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                worker.join(0.05)
