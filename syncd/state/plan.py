"""What a job decided, as plain data: the `Plan` a pure function returns and the store
applies in one transaction.

A job reads (remote pages, host rows, its mirror tables), hands plain values to its
planner, and applies the returned `Plan` with `Store.apply`. The planner does no I/O, so
its tests need no server and no database. Writes to a job's own mirror tables travel
as `Change` values defined by the module that owns those tables: the plan names what
changes, the owner knows how it is stored.

A plan is made of:
- `intents`: outbox entries (a replay of an existing idempotency key is not recorded twice);
- `rejects`: new rejects, each with its own field and reason (never parsed from a
  message); `rejects_once` are added only when no identical one is open;
- `resolved_rejects`: ids of open rejects that the item no longer deserves;
- `changes`: mirror-table writes, in order;
- `alerts`: alerts to open and to resolve, in order;
- `checkpoints`: (stream, value) pairs, written last.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from syncd.state.kinds import AlertKind
from syncd.state.store import NewIntent, NewReject

if TYPE_CHECKING:
    from syncd.state.store import Store


class Change(Protocol):
    """One write to a mirror table, applied inside the plan's transaction by the module
    that owns the table."""

    def apply(self, store: Store) -> None: ...


@dataclass(frozen=True)
class OpenAlert:
    kind: AlertKind
    message: str
    subject: str = ""


@dataclass(frozen=True)
class ResolveAlerts:
    """Resolve the open alerts of a kind (of one subject, or every subject when None)."""

    kind: AlertKind
    subject: str | None = None


AlertChange = OpenAlert | ResolveAlerts


@dataclass(frozen=True)
class Plan:
    intents: tuple[NewIntent, ...] = ()
    rejects: tuple[NewReject, ...] = ()
    rejects_once: tuple[NewReject, ...] = ()
    resolved_rejects: tuple[int, ...] = ()
    changes: tuple[Change, ...] = ()
    alerts: tuple[AlertChange, ...] = ()
    checkpoints: tuple[tuple[str, str], ...] = ()

    def __add__(self, other: Plan) -> Plan:
        """Both plans, this one's entries first (checkpoints: the later value of a stream wins
        when applied, as they are written in order)."""
        return Plan(
            intents=self.intents + other.intents,
            rejects=self.rejects + other.rejects,
            rejects_once=self.rejects_once + other.rejects_once,
            resolved_rejects=self.resolved_rejects + other.resolved_rejects,
            changes=self.changes + other.changes,
            alerts=self.alerts + other.alerts,
            checkpoints=self.checkpoints + other.checkpoints,
        )

    def __bool__(self) -> bool:
        return any(
            (
                self.intents,
                self.rejects,
                self.rejects_once,
                self.resolved_rejects,
                self.changes,
                self.alerts,
                self.checkpoints,
            )
        )

    @classmethod
    def joined(cls, plans: Iterable[Plan]) -> Plan:
        total = cls()
        for plan in plans:
            total = total + plan
        return total


@dataclass(frozen=True)
class Applied:
    """What applying a plan did: new outbox entries (replays not counted) and rejects added."""

    intents: int = 0
    rejects: int = 0
    opened_alerts: tuple[OpenAlert, ...] = field(default=())


def apply_plan(store: Store, plan: Plan, *, run_id: str | None = None) -> Applied:
    """Apply every part of `plan` in one transaction (a savepoint inside the caller's)."""
    opened: list[OpenAlert] = []
    with store.transaction():
        for change in plan.changes:
            change.apply(store)
        intents = store.add_intents(plan.intents, run_id=run_id)
        rejects = store.add_rejects(plan.rejects, run_id=run_id)
        rejects += store.add_rejects_once(plan.rejects_once, run_id=run_id)
        if plan.resolved_rejects:
            store.resolve_open_rejects(plan.resolved_rejects)
        for alert in plan.alerts:
            if isinstance(alert, OpenAlert):
                if store.open_alert(alert.kind, alert.message, alert.subject):
                    opened.append(alert)
            else:
                store.resolve_alerts(alert.kind, alert.subject)
        for stream, value in plan.checkpoints:
            store.set_checkpoint(stream, value, run_id=run_id)
    return Applied(intents=intents, rejects=rejects, opened_alerts=tuple(opened))


__all__ = ["AlertChange", "Applied", "Change", "OpenAlert", "Plan", "ResolveAlerts", "apply_plan"]
