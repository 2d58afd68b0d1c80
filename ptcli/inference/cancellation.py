"""Work nobody waits for, stopped where it can stop: the server says, around a forward pass or
a stream, what makes it pointless (every request of the batch answered 504, the client gone),
and long loops of a predictor (a language model's tokens) ask ``requested()`` between steps.

A thread-local, so that a Predictor's contract stays as it is: code that never asks runs to the
end as before."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_local = threading.local()


class Cancelled(Exception):
    """The work was stopped because nobody waits for its result."""


def requested() -> bool:
    """Whether the work running on this thread should stop now."""
    check = getattr(_local, "check", None)
    return bool(check is not None and check())


@contextmanager
def watching(check: Callable[[], bool]) -> Iterator[None]:
    """Within the block, ``requested()`` on this thread asks ``check``."""
    previous = getattr(_local, "check", None)
    _local.check = check
    try:
        yield
    finally:
        _local.check = previous
