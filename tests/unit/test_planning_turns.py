"""`flights.Turns`: the submit steps' writes go before records queued ahead of them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from syncd.jobs.planning.flights import Turns
from syncd.state import Store


def _wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_an_urgent_holder_goes_before_those_that_queued_first() -> None:
    turns = Turns()
    order: list[str] = []
    release = threading.Event()

    def first() -> None:
        with turns.hold():
            order.append("first")
            release.wait(5)

    def later(name: str, urgent: bool) -> None:
        with turns.hold(urgent=urgent):
            order.append(name)

    holder = threading.Thread(target=first)
    holder.start()
    _wait_for(lambda: order == ["first"])
    records = [threading.Thread(target=later, args=(f"record-{n}", False)) for n in range(3)]
    for t in records:
        t.start()
    time.sleep(0.05)  # the records queue first
    submit = threading.Thread(target=later, args=("submit", True))
    submit.start()
    _wait_for(lambda: turns.urgent_waiting == 1)
    release.set()
    for t in [holder, submit, *records]:
        t.join(5)
    assert order[:2] == ["first", "submit"]
    assert sorted(order[2:]) == ["record-0", "record-1", "record-2"]


def test_one_holder_at_a_time_and_an_error_lets_go() -> None:
    turns = Turns()
    inside = 0
    most = 0
    lock = threading.Lock()

    def work(n: int) -> None:
        nonlocal inside, most
        try:
            with turns.hold(urgent=n % 3 == 0):
                with lock:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.001)
                with lock:
                    inside -= 1
                if n % 5 == 0:
                    raise ValueError(n)
        except ValueError:
            pass

    threads = [threading.Thread(target=work, args=(n,)) for n in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert most == 1
    with turns.hold():  # nothing left holding it
        pass


def test_write_one_is_its_own_transaction_or_part_of_the_callers(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        store.db.execute("CREATE TABLE t (v INTEGER)")
        assert store.write_one("INSERT INTO t VALUES (?)", [1]) == 1
        assert not store.db.conn.in_transaction  # committed at once
        try:
            with store.transaction():
                store.write_one("INSERT INTO t VALUES (?)", [2])
                raise RuntimeError("undo")
        except RuntimeError:
            pass
        assert store.query("SELECT v FROM t") == [{"v": 1}]  # rolled back with the caller's
