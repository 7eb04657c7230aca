"""Helpers over the simulators that more than one test tier uses."""

from __future__ import annotations

from collections import Counter
from typing import Any

from syncd.sandbox.instock import InstockState


def count_creates(state: InstockState) -> Counter[str]:
    """Count every order the Instock simulator creates, per order id (from now on)."""
    creates: Counter[str] = Counter()

    def add_order(order: Any) -> None:
        creates[order.order_id] += 1
        InstockState.add_order(state, order)

    state.add_order = add_order  # type: ignore[method-assign]
    return creates
