"""A token's rate quota on a clock the test moves: the bucket's burst, its refill and the Retry-After it gives, with
no wait (tests/e2e/test_quotas.py shows the same rule on the real clock, over HTTP). Times are binary fractions, so
the sums are exact."""

from __future__ import annotations

from poulpe.quotas import LocalBuckets
from tests.clock import Clock


async def test_a_full_bucket_takes_a_burst_of_its_rate_then_refills_at_the_rate() -> None:
    clock = Clock(1024.0)
    buckets = LocalBuckets(clock=clock)
    assert [await buckets.take("reports", 4, 1) for _ in range(4)] == [None] * 4  # a second's worth at once
    assert await buckets.take("reports", 4, 1) == 0.25, "the 5th waits for one token: a quarter second at 4 a second"

    clock.advance(0.125)
    assert await buckets.take("reports", 4, 1) == 0.125, "half a token is not one"
    clock.advance(0.125)
    assert await buckets.take("reports", 4, 1) is None
    assert await buckets.take("reports", 4, 1) == 0.25

    clock.advance(3600)  # an hour idle fills the bucket to its rate, never more
    assert [await buckets.take("reports", 4, 1) for _ in range(4)] == [None] * 4
    assert await buckets.take("reports", 4, 1) == 0.25


async def test_each_token_has_a_bucket_of_its_own() -> None:
    buckets = LocalBuckets(clock=Clock(1024.0))
    assert await buckets.take("a", 1, 1) is None
    assert await buckets.take("a", 1, 1) == 1.0
    assert await buckets.take("b", 1, 1) is None, "a's spent bucket held b back"
