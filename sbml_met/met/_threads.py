"""Thread policy for MET queries: small work runs on one torch thread.

torch's intra-op threads pay off only on large tensors; on small ones (a 10^4-sample prompt) they
spin and wait for each other, and when another process keeps a core busy a two-thread call can take
30x the one-thread time. A query whose batch has at most ``SMALL_WORK`` rows therefore runs with
one thread; larger ones keep the user's setting. The user's ``torch.set_num_threads`` value is
restored when the call returns (or raises). Thread counts never change the numbers drawn.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

SMALL_WORK = 65_536  # rows per batch; MET queries batch at most this many states at a time


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the caller's setting."""
    old = torch.get_num_threads()
    if n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def scoped_threads(work: Callable[..., int]) -> Callable:
    """Decorator: one torch thread when ``work(*args, **kwargs)`` (rows per batch) is small."""
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            rows = work(*args, **kwargs)
            with torch_threads(1 if rows <= SMALL_WORK else torch.get_num_threads()):
                return fn(*args, **kwargs)
        return inner
    return wrap
