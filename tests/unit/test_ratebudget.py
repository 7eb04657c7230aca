"""The rate budget's arithmetic (pure, over plain values) and its sharing and persistence
rules, with a passed-in clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd import ratebudget
from syncd.connectors.dsorder import DSOrderConfig
from syncd.connectors.instock import InstockConfig
from syncd.ratebudget import (
    PERSIST_INTERVAL,
    Bucket,
    Budgets,
    RateBudget,
    Throttled,
    refill,
    should_persist,
    take,
    throttle,
)
from syncd.sections import RateLimit

LIMIT = RateLimit(per_second=2, burst=4)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class MemoryStore:
    """A BudgetStore in a dict, counting writes."""

    def __init__(self) -> None:
        self.rows: dict[str, Bucket] = {}
        self.writes = 0

    def load(self, connector: str) -> Bucket | None:
        return self.rows.get(connector)

    def save(self, connector: str, bucket: Bucket) -> None:
        self.rows[connector] = bucket
        self.writes += 1

    def close(self) -> None:
        pass


def test_refill_grows_with_time_up_to_the_burst_and_never_backwards() -> None:
    bucket = Bucket(tokens=0.0, at=10.0)
    assert refill(bucket, 11.0, 2, 4).tokens == 2.0
    assert refill(bucket, 100.0, 2, 4).tokens == 4.0
    assert refill(bucket, 5.0, 2, 4) == bucket  # a clock that went back adds nothing


def test_take_spends_the_burst_then_spaces_requests() -> None:
    bucket = Bucket(tokens=4.0, at=0.0)
    waits = []
    for _ in range(6):
        taken = take(bucket, 0.0, LIMIT, max_wait=60)
        assert taken is not None
        bucket, waits = taken.bucket, [*waits, taken.wait]
    assert waits == [0.0, 0.0, 0.0, 0.0, 0.5, 1.0]


def test_take_refuses_past_max_wait_and_leaves_the_bucket_alone() -> None:
    bucket = Bucket(tokens=-3.0, at=0.0)  # three requests already promised slots
    assert take(bucket, 0.0, LIMIT, max_wait=1.9) is None
    taken = take(bucket, 0.0, LIMIT, max_wait=2.0)
    assert taken is not None
    assert taken.wait == 2.0


def test_a_park_holds_requests_even_when_tokens_are_left() -> None:
    parked = throttle(Bucket(tokens=4.0, at=0.0), 0.0, retry_after=30, reason="429")
    assert parked.tokens == 0.0
    assert parked.parked_until == 30.0
    taken = take(parked, 10.0, LIMIT, max_wait=60)
    assert taken is not None
    assert taken.wait == 20.0
    assert take(parked, 10.0, LIMIT, max_wait=19) is None
    # A request that sat out this park itself (its own 429's Retry-After) is not held again.
    own = take(parked, 10.0, LIMIT, max_wait=60, sat_out=30.0)
    assert own is not None
    assert own.wait == 0.0
    # Unlimited budgets are parked too.
    free = take(parked, 10.0, RateLimit(per_second=0), max_wait=60)
    assert free is not None
    assert free.wait == 20.0


def test_a_shorter_park_keeps_the_longer_and_a_429_without_retry_after_only_empties() -> None:
    parked = throttle(Bucket(tokens=4.0, at=0.0), 0.0, 60, "first")
    again = throttle(parked, 1.0, 5, "second")
    assert (again.parked_until, again.park_reason) == (60.0, "first")
    emptied = throttle(Bucket(tokens=3.0, at=0.0), 0.0, None, "no header")
    assert (emptied.tokens, emptied.parked_until) == (0.0, 0.0)


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=40),
    per_second=st.floats(min_value=0.5, max_value=50),
    burst=st.integers(min_value=1, max_value=20),
)
def test_no_window_ever_sees_more_than_burst_plus_rate_times_its_length(
    gaps: list[float], per_second: float, burst: int
) -> None:
    """Requests arriving at any times go out (arrival + wait) at most burst + rate * T in any
    T seconds: the property the remote's limit is set against."""
    limit = RateLimit(per_second=per_second, burst=burst)
    bucket, now, sent = Bucket(tokens=float(burst), at=0.0), 0.0, []
    for gap in gaps:
        now += gap
        taken = take(bucket, now, limit, max_wait=1e9)
        assert taken is not None
        bucket = taken.bucket
        sent.append(now + taken.wait)
    sent.sort()
    for i, start in enumerate(sent):
        for j in range(i, len(sent)):
            span = sent[j] - start
            assert j - i + 1 <= burst + per_second * span + 1e-6


def test_persisted_when_the_interval_passed_or_the_bucket_ran_empty() -> None:
    full, empty = Bucket(tokens=4.0, at=0.0), Bucket(tokens=0.5, at=0.1)
    assert should_persist(None, 0.0, full, 0.0)
    assert not should_persist(full, 0.0, Bucket(tokens=3.0, at=0.1), 0.1)
    assert should_persist(full, 0.0, empty, 0.1)  # just ran empty
    assert not should_persist(empty, 0.1, Bucket(tokens=-1.0, at=0.2), 0.2)
    assert should_persist(empty, 0.1, Bucket(tokens=-1.0, at=0.2), 0.1 + PERSIST_INTERVAL)


def test_a_budget_writes_rarely_and_a_new_process_continues_from_what_it_wrote() -> None:
    clock, store = Clock(), MemoryStore()
    budget = RateBudget("instock", RateLimit(per_second=1000, burst=2000), store, clock)
    for _ in range(1000):  # a busy second: 1000 requests, far from empty
        budget.acquire(max_wait=60)
        clock.now += 0.001
    assert store.writes <= 2  # the first, and one when the interval passed
    budget.flush()
    restarted = RateBudget("instock", RateLimit(per_second=1000, burst=2000), store, clock)
    assert restarted.bucket == store.rows["instock"]
    assert restarted.bucket.tokens < 2000


def test_a_park_is_written_at_once_and_a_request_past_it_is_refused_with_the_moment() -> None:
    clock, store = Clock(), MemoryStore()
    budget = RateBudget("dsorder", LIMIT, store, clock)
    budget.throttled(120, "429 to GET /orders")
    assert store.rows["dsorder"].parked_until == clock.now + 120
    with pytest.raises(Throttled) as info:
        budget.acquire(max_wait=60)
    assert info.value.ready_at == clock.now + 120
    assert "Retry-After" in info.value.reason
    clock.now += 121
    assert budget.acquire(max_wait=60) == 0.0


def test_one_budget_per_connector_while_installed_and_a_private_one_otherwise() -> None:
    limit = RateLimit(per_second=1, burst=1)
    assert ratebudget.budget_for("x", limit) is not ratebudget.budget_for("x", limit)
    installed = ratebudget.install(MemoryStore())
    try:
        shared = ratebudget.budget_for("x", limit)
        assert ratebudget.budget_for("x", limit) is shared
        assert ratebudget.budget_for("y", limit) is not shared
        smaller = RateLimit(per_second=1, burst=1)
        assert installed.get("x", smaller) is shared
    finally:
        ratebudget.uninstall()


def test_a_reload_keeps_the_tokens_capped_at_the_new_burst() -> None:
    budgets = Budgets(MemoryStore(), Clock())
    budget = budgets.get("instock", RateLimit(per_second=1, burst=10))
    budgets.get("instock", RateLimit(per_second=1, burst=3))
    assert budget.limit.burst == 3
    assert budget.bucket.tokens == 3.0


def test_each_connector_has_its_default_and_one_key_keeps_the_other() -> None:
    assert InstockConfig().rate_limit == RateLimit(per_second=20, burst=40)
    assert DSOrderConfig().rate_limit == RateLimit(per_second=5, burst=10)
    assert InstockConfig(rate_limit={"burst": 100}).rate_limit == RateLimit(
        per_second=20, burst=100
    )
