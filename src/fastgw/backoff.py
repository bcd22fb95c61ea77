"""The one back-off of the gateway: how long to wait before trying again after consecutive
failures (a child process that keeps dying, an unreachable Redis, a JWKS URL that keeps failing)."""
from __future__ import annotations

__all__ = ["Backoff"]


class Backoff:
    """`first` seconds after a failure, doubled at each further one, never more than `most`.
    Call order: `failed()` after each failure returns the wait before the next try; `reset()`
    after a success (the next failure waits `first` again)."""

    __slots__ = ("first", "most", "delay")

    def __init__(self, first: float, most: float) -> None:
        self.first = first
        self.most = most
        self.delay = 0.0
        """The wait the last failure got; 0.0 after a success."""

    def failed(self) -> float:
        self.delay = min(self.most, self.delay * 2 if self.delay else self.first)
        return self.delay

    def reset(self) -> float:
        """Returns the wait after a success: none."""
        self.delay = 0.0
        return 0.0
