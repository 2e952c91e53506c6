"""A bounded prefetch of an iterator's items on a background thread.

Minibatches are read from disk (``os.pread``), decoded (compressed matrices decompressed) and padded while
the training thread computes the previous ones; at most ``depth`` finished items wait in the queue, so the
memory held is ``depth + 2`` items (the queue, the one being made, the one in use), whatever the corpus.

A thread, not ``torch.utils.data.DataLoader`` workers: the work is reads and numpy/torch kernels that
release the GIL, the items keep the order of the iterator without a sampler (so a run gives the same
minibatches in the same order with and without prefetch, and a resume position stays a plain index), no
process is forked (a worker process would copy the trainer's index and, on this 2-core machine, compete
with the training process for the cores), and nothing is pickled through shared memory.  icefall/lhotse use
DataLoader workers because their samplers decode audio on the fly; here a minibatch costs far less than a
training step, so one thread keeps up.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")
_END = object()


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """The items of ``items`` in order, made up to ``depth`` ahead by a background thread (``depth`` 0: made
    on the caller's thread).  An exception of the iterator is raised by the caller's ``next``; closing the
    generator early (a ``break``) stops the thread after the item it is making."""
    if depth <= 0:
        yield from items
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for x in items:
                if not put((x, None)):
                    return
            put((_END, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put((_END, e))

    t = threading.Thread(target=work, name="prefetch", daemon=True)
    t.start()
    try:
        while True:
            x, err = q.get()
            if x is _END:
                if err is not None:
                    raise err
                return
            yield x
    finally:
        stop.set()
        t.join()
