"""Read ahead: fetch the next page while the current one is being stored.

A pull is a loop of "wait for the remote" then "write to SQLite"; running the
fetches in one helper thread overlaps the two. The queue holds at most
`depth` pages, so memory stays bounded, and closing the consumer stops the
producer at its next page.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def read_ahead(source: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Yield `source`'s items, produced one step ahead in a helper thread.

    Exceptions raised by the source re-raise in the consumer, in order.
    """
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_DONE)
        except BaseException as exc:  # handed to the consumer, never lost
            slots.put(exc)
        finally:  # a generator source ends here, in its own thread (e.g. closes a connection)
            close = getattr(source, "close", None)
            if close is not None:
                close()

    # The helper sees the caller's context (job and run_id for correlation ids).
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(produce,), name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while thread.is_alive():
            try:
                slots.get_nowait()
            except queue.Empty:
                thread.join(0.05)
