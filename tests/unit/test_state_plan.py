"""A `Plan` is applied whole or not at all, in the order its parts are documented."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from syncd.state import NewIntent, NewReject, Store
from syncd.state.plan import OpenAlert, Plan, ResolveAlerts, apply_plan


@dataclass(frozen=True)
class _Note:
    """A stand-in mirror change: writes one checkpoint-like row through the store."""

    text: str
    fail: bool = False

    def apply(self, store: Store) -> None:
        if self.fail:
            raise RuntimeError("mirror write failed")
        store.set_checkpoint(f"note:{self.text}", self.text)


def _intent(key: str) -> NewIntent:
    return NewIntent("instock", "order.create", key, key, {"id": key})


def test_every_part_lands_and_replayed_intents_count_once(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        plan = Plan(
            intents=(_intent("a"), _intent("b")),
            rejects=(NewReject("dsorder.pull", "o-1", "no lines", field="lines"),),
            changes=(_Note("x"),),
            alerts=(OpenAlert("auth_failed", "401", "instock"),),
            checkpoints=(("s", "1"), ("s", "2")),
        )
        applied = apply_plan(store, plan, run_id="r1")
        assert (applied.intents, applied.rejects) == (2, 1)
        assert [a.kind for a in applied.opened_alerts] == ["auth_failed"]
        assert store.get_checkpoint("s") == "2"  # written in order: the later value wins
        assert store.get_checkpoint("note:x") == "x"
        reject = store.list_rejects()[0]
        assert (reject["field"], reject["reason"], reject["run_id"]) == ("lines", "no lines", "r1")

        again = apply_plan(store, Plan(intents=(_intent("a"),), rejects_once=plan.rejects))
        assert (again.intents, again.rejects) == (0, 0)
        assert store.scalar("SELECT count(*) FROM outbox") == 2

        apply_plan(store, Plan(alerts=(ResolveAlerts("auth_failed"),)))
        assert store.open_alerts() == []


def test_a_failing_change_leaves_nothing_behind(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        plan = Plan(
            intents=(_intent("a"),),
            changes=(_Note("x"), _Note("y", fail=True)),
            checkpoints=(("s", "1"),),
        )
        with pytest.raises(RuntimeError):
            apply_plan(store, plan)
        assert store.scalar("SELECT count(*) FROM outbox") == 0
        assert store.get_checkpoint("s") is None
        assert store.get_checkpoint("note:x") is None


def test_plans_add_up_in_order_and_empty_is_false() -> None:
    first = Plan(intents=(_intent("a"),), checkpoints=(("s", "1"),))
    second = Plan(intents=(_intent("b"),), checkpoints=(("s", "2"),))
    both = Plan.joined([first, second])
    assert [i.order_key for i in both.intents] == ["a", "b"]
    assert both.checkpoints == (("s", "1"), ("s", "2"))
    assert not Plan()
    assert both
