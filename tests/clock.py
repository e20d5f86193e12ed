"""A clock a test moves by hand, for the classes that take `clock=`: a timing rule is checked without waiting it out."""

from __future__ import annotations


class Clock:
    """Unix seconds that stand still until the test moves them."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
