"""The outbox sender against a real loopback HTTP server that misbehaves."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from syncd.config import ConnectorConfig, Settings
from syncd.errors import AlreadyDoneError, PermanentError
from syncd.http import HttpClient, build_client
from syncd.sandbox.base import ApiError, Request, Response, SandboxServer
from syncd.send.sender import TURN, Sender
from syncd.state import Intent, NewIntent, Store


class OrdersApi:
    """A remote that creates orders by natural key and applies versioned updates."""

    def __init__(self) -> None:
        self.orders: dict[str, int] = {}
        self.applied: dict[str, list[int]] = defaultdict(list)

    def create(self, request: Request) -> Response:
        order_id = request.json["order_id"]
        if order_id in self.orders:
            raise ApiError(409, "already_exists", f"order {order_id} already exists")
        if order_id.startswith("bad"):
            raise ApiError(400, "bad_request", f"order {order_id}: unknown article")
        self.orders[order_id] = 0
        self.applied[order_id].append(0)
        return Response.of_json({"order_id": order_id}, status=201)

    def update(self, request: Request) -> Response:
        order_id = request.params["order_id"]
        self.orders[order_id] = request.json["version"]
        self.applied[order_id].append(request.json["version"])
        return Response.of_json({"order_id": order_id})


class OrdersDestination:
    """A connector-style destination: natural keys, and 409 mapped to 'already done'."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client

    def send(self, intent: Intent) -> Any:
        payload = intent.payload
        try:
            if intent.kind == "create":
                return self.client.json(self.client.request("POST", "/orders", json_body=payload))
            path = f"/orders/{payload['order_id']}"
            return self.client.json(self.client.request("PUT", path, json_body=payload))
        except PermanentError as exc:
            if exc.status == 409:
                raise AlreadyDoneError(exc.message, status=409) from exc
            raise

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def api() -> Iterator[tuple[SandboxServer, OrdersApi]]:
    orders = OrdersApi()
    server = SandboxServer(retry_after=1, slow_seconds=1.0)
    server.add_route("POST", "/orders", orders.create)
    server.add_route("PUT", "/orders/{order_id}", orders.update)
    with server:
        yield server, orders


def make_sender(store: Store, settings: Settings, server: SandboxServer) -> Sender:
    conn = ConnectorConfig.model_validate(
        {
            "enabled": True,
            "base_url": server.url,
            "timeouts": {"read": 0.3},
            # One HTTP attempt per drain: the sender's own retry schedule is under test.
            "retry": {"max_attempts": 1},
        }
    )

    def factory(_: Settings) -> OrdersDestination:
        return OrdersDestination(build_client("orders", conn))

    return Sender(store, settings, destinations={"orders": factory})


def drain_until_empty(sender: Sender, store: Store, deadline_s: float = 10) -> None:
    deadline = time.monotonic() + deadline_s
    while store.scalar("SELECT count(*) FROM outbox WHERE status = 'pending'"):
        assert time.monotonic() < deadline, store.query(
            "SELECT * FROM outbox WHERE status = 'pending'"
        )
        sender.drain()
        time.sleep(0.05)


def queue_orders(store: Store, keys: list[str]) -> None:
    intents = []
    for key in keys:
        intents.append(NewIntent("orders", "create", key, f"create:{key}", {"order_id": key}))
        for version in (1, 2):
            intents.append(
                NewIntent(
                    "orders",
                    "update",
                    key,
                    f"update:{key}:{version}",
                    {"order_id": key, "version": version},
                )
            )
    store.add_intents(intents)


def test_intents_delivered_once_each_in_order_despite_faults(
    api: tuple[SandboxServer, OrdersApi], make_settings: Any
) -> None:
    """429 with Retry-After, 503 and a timeout delay delivery but never reorder or double it."""
    server, orders = api
    settings = make_settings(outbox={"initial_backoff": 0.05, "max_backoff": 0.2})
    server.faults.script("POST /orders", ["429", "503", "ok", "slow"])
    server.faults.script("PUT /orders/{order_id}", ["503", "ok", "429"])
    with Store.open(settings.db_path) as store:
        queue_orders(store, ["A", "B", "C"])
        sender = make_sender(store, settings, server)
        drain_until_empty(sender, store)
        assert store.scalar("SELECT count(*) FROM outbox WHERE status = 'sent'") == 9
        assert store.scalar("SELECT count(*) FROM rejects") == 0
        assert store.scalar("SELECT max(attempts) FROM outbox") >= 2
    assert orders.orders == {"A": 2, "B": 2, "C": 2}
    # Each key saw create, v1, v2 in that order; a timed-out create may have landed
    # before the client gave up, and its replay was recognised as already done.
    for key in "ABC":
        assert orders.applied[key] == [0, 1, 2]
    assert server.count("POST /orders") >= 5  # faults forced retries over the wire


def test_permanent_refusal_goes_to_rejects_and_later_intents_continue(
    api: tuple[SandboxServer, OrdersApi], make_settings: Any
) -> None:
    """A 400 moves the intent to rejects with the remote's reason; other keys still flow."""
    server, orders = api
    settings = make_settings()
    with Store.open(settings.db_path) as store:
        store.add_intents(
            [
                NewIntent("orders", "create", "bad-1", "create:bad-1", {"order_id": "bad-1"}),
                NewIntent("orders", "create", "ok-1", "create:ok-1", {"order_id": "ok-1"}),
            ]
        )
        make_sender(store, settings, server).drain()
        rejects = store.list_rejects()
        assert len(rejects) == 1
        assert "unknown article" in rejects[0]["reason"]
        assert rejects[0]["source"] == "outbox:orders"
    assert orders.orders == {"ok-1": 0}


def test_crash_between_send_and_mark_sent_converges(
    api: tuple[SandboxServer, OrdersApi], make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the process dies after the remote accepted but before 'sent' is stored, the replay
    is answered 'already exists' and the end state is the same as without the crash."""
    server, orders = api
    settings = make_settings()
    with Store.open(settings.db_path) as store:
        queue_orders(store, ["A"])
        sender = make_sender(store, settings, server)

        class Killed(BaseException):
            pass

        def die(*_: Any, **__: Any) -> None:
            raise Killed

        with monkeypatch.context() as m:
            m.setattr(store, "mark_sent", die)
            with pytest.raises(Killed):
                sender.drain()
        assert orders.orders == {"A": 0}  # the remote has it; our DB does not know
        drain_until_empty(make_sender(store, settings, server), store)
        rows = store.query("SELECT kind, status, result FROM outbox ORDER BY id")
        assert [r["status"] for r in rows] == ["sent", "sent", "sent"]
        assert "already_done" in rows[0]["result"]
    assert orders.applied["A"] == [0, 1, 2]


def test_retries_are_bounded_then_alerted(
    api: tuple[SandboxServer, OrdersApi], make_settings: Any
) -> None:
    """An intent that keeps failing is given up after max_attempts: rejected and alerted."""
    server, _ = api
    settings = make_settings(
        outbox={"initial_backoff": 0.01, "max_backoff": 0.02, "max_attempts": 3}
    )
    server.faults.rate("POST /orders", "503", 1.0)
    with Store.open(settings.db_path) as store:
        store.add_intents([NewIntent("orders", "create", "A", "create:A", {"order_id": "A"})])
        drain_until_empty(make_sender(store, settings, server), store)
        assert store.scalar("SELECT status FROM outbox") == "rejected"
        assert "gave up after 3 attempts" in store.list_rejects()[0]["reason"]
        alerts = store.open_alerts("outbox_gave_up")
        assert len(alerts) == 1
        assert "syncd rejects show" in alerts[0]["message"]


def test_auth_failure_stops_the_destination_and_alerts(
    api: tuple[SandboxServer, OrdersApi], make_settings: Any
) -> None:
    """A refused credential stops that destination (intents stay pending) and opens an alert."""
    server, orders = api
    settings = make_settings()
    server.faults.rate("*", "token_expired", 1.0)
    with Store.open(settings.db_path) as store:
        queue_orders(store, ["A", "B"])
        make_sender(store, settings, server).drain()
        assert store.scalar("SELECT count(*) FROM outbox WHERE status = 'pending'") == 6
        assert store.open_alerts("auth")[0]["subject"] == "orders"
    assert server.count("POST /orders") == 1  # stopped after the first refusal
    assert orders.orders == {}


def test_a_rejected_intent_can_hold_back_the_rest_of_its_key(
    api: tuple[SandboxServer, OrdersApi], make_settings: Any
) -> None:
    """With stop_key_on_reject, later intents of a key wait while an earlier one is rejected,
    and go on once the operator drops that reject; other keys are not held."""
    server, orders = api
    settings = make_settings()
    with Store.open(settings.db_path) as store:
        store.add_intents(
            [
                NewIntent("orders", "create", "K", "create:bad-K", {"order_id": "bad-K"}),
                NewIntent("orders", "update", "K", "update:K", {"order_id": "bad-K", "version": 1}),
                NewIntent("orders", "create", "L", "create:L", {"order_id": "L"}),
            ]
        )
        sender = make_sender(store, settings, server)
        real_factory = sender.destinations["orders"]

        def strict(s: Settings) -> Any:
            destination = real_factory(s)
            destination.stop_key_on_reject = True
            return destination

        sender.destinations = {"orders": strict}
        sender.drain()
        sender.drain()
        statuses = [r["status"] for r in store.query("SELECT status FROM outbox ORDER BY id")]
        assert statuses == ["rejected", "pending", "sent"]
        store.drop_reject(store.list_rejects()[0]["id"])
        sender.drain()
        assert (
            store.scalar("SELECT status FROM outbox WHERE idempotency_key = 'update:K'") == "sent"
        )
    assert orders.applied["L"] == [0]


def _unclear(store: Store) -> dict[str, int]:
    rows = store.query("SELECT idempotency_key, unclear FROM outbox WHERE kind = 'create'")
    return {r["idempotency_key"]: r["unclear"] for r in rows}


def test_an_attempt_without_a_clear_answer_is_marked_for_read_back(
    api: tuple[SandboxServer, OrdersApi], make_settings: Any
) -> None:
    """A timeout after sending (the remote applied it) and a 503 leave the intent marked
    unclear; a 429 (provably not applied) does not; a later clear answer clears it."""
    server, orders = api
    settings = make_settings(outbox={"initial_backoff": 0.01, "max_backoff": 0.01})
    server.faults.script("POST /orders", ["slow", "503", "429"])
    with Store.open(settings.db_path) as store:
        for key in ("A", "B", "C"):
            store.add_intents([NewIntent("orders", "create", key, key, {"order_id": key})])
        make_sender(store, settings, server).drain()
        assert _unclear(store) == {"A": 1, "B": 1, "C": 0}
        assert store.scalar("SELECT count(*) FROM outbox WHERE status = 'pending'") == 3
    assert orders.orders == {}  # nothing was answered: the slow create lands after the timeout


def test_a_crash_mid_send_leaves_the_intent_marked_unclear(
    api: tuple[SandboxServer, OrdersApi], make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark is written before the request: a process that dies while the request is
    in flight leaves it set, so the next attempt knows the outcome is unknown."""
    server, _ = api
    settings = make_settings()

    class Killed(BaseException):
        pass

    with Store.open(settings.db_path) as store:
        store.add_intents([NewIntent("orders", "create", "A", "A", {"order_id": "A"})])
        sender = make_sender(store, settings, server)
        with monkeypatch.context() as m:
            m.setattr(OrdersDestination, "send", lambda *_: (_ for _ in ()).throw(Killed()))
            with pytest.raises(Killed):
                sender.drain()
        assert _unclear(store) == {"A": 1}
        assert store.pending_intents("orders", 10)[0].unclear is True


def two_destinations(
    store: Store, settings: Settings, server: SandboxServer, sent: list[str]
) -> Sender:
    """Destinations `a` and `b` on the same remote, recording the order of what they sent."""
    sender = make_sender(store, settings, server)
    orders = sender.destinations["orders"]

    def recording(name: str) -> Any:
        def factory(s: Settings) -> Any:
            destination = orders(s)
            send = destination.send

            def send_and_note(intent: Intent) -> Any:
                result = send(intent)
                sent.append(f"{name}:{intent.order_key}")
                return result

            destination.send = send_and_note
            return destination

        return factory

    sender.destinations = {"a": recording("a"), "b": recording("b")}
    return sender


def test_a_long_queue_for_one_destination_does_not_hold_back_another(
    api: tuple[SandboxServer, OrdersApi], make_settings: Any
) -> None:
    """Destinations take turns of `TURN` intents: the one intent for `b` goes after the
    first turn of `a`'s 40, not after all of them."""
    server, orders = api
    settings = make_settings()
    sent: list[str] = []
    with Store.open(settings.db_path) as store:
        store.add_intents(
            NewIntent("a", "create", f"A{n}", f"create:A{n}", {"order_id": f"A{n}"})
            for n in range(40)
        )
        store.add_intents([NewIntent("b", "create", "B", "create:B", {"order_id": "B"})])
        two_destinations(store, settings, server, sent).drain()
        assert store.scalar("SELECT count(*) FROM outbox WHERE status = 'sent'") == 41
    assert sent.index("b:B") == TURN
    assert len(orders.orders) == 41


def test_a_destination_whose_intents_fall_due_mid_drain_joins_the_drain(
    api: tuple[SandboxServer, OrdersApi], make_settings: Any
) -> None:
    """An intent queued for `b` while `a`'s long queue is being sent (a job queueing the
    close of an order just done) goes in the same drain, not after it."""
    server, _ = api
    settings = make_settings()
    sent: list[str] = []
    with Store.open(settings.db_path) as store:
        store.add_intents(
            NewIntent("a", "create", f"A{n}", f"create:A{n}", {"order_id": f"A{n}"})
            for n in range(40)
        )
        sender = two_destinations(store, settings, server, sent)
        factory_a = sender.destinations["a"]

        def queueing_b(s: Settings) -> Any:
            destination = factory_a(s)
            send = destination.send

            def send_then_queue(intent: Intent) -> Any:
                result = send(intent)
                if intent.order_key == "A3":
                    with Store.open(settings.db_path) as other:  # another job's connection
                        other.add_intents(
                            [NewIntent("b", "create", "B", "create:B", {"order_id": "B"})]
                        )
                return result

            destination.send = send_then_queue
            return destination

        sender.destinations["a"] = queueing_b
        sender.drain()
        assert store.scalar("SELECT count(*) FROM outbox WHERE status = 'pending'") == 0
    assert sent.index("b:B") < 40
    assert sent[-1] == "a:A39"


def test_intents_a_turn_marked_but_never_tried_are_not_left_unclear(
    api: tuple[SandboxServer, OrdersApi], make_settings: Any
) -> None:
    """A turn marks the intents it is about to try in one transaction; when the destination
    stops after the first (a refused credential), the others get their mark back off, so
    their next attempt sends without reading the remote first (the one tried keeps its mark,
    as an attempt did before turns)."""
    server, _ = api
    settings = make_settings()
    server.faults.script("*", ["token_expired"])
    with Store.open(settings.db_path) as store:
        for key in ("A", "B", "C"):
            store.add_intents([NewIntent("orders", "create", key, key, {"order_id": key})])
        make_sender(store, settings, server).drain()
        assert store.scalar("SELECT count(*) FROM outbox WHERE status = 'pending'") == 3
        assert _unclear(store) == {"A": 1, "B": 0, "C": 0}
        assert server.count("POST /orders") == 1
