"""Where the Instock document is silent, the client must not share the simulator's reading.

Each test switches the simulator to another plausible reading of the document (the order of
the orders list) or plays what the document describes but the default data does not show
(a reception order whose ASN is added during decanting), over real loopback HTTP and real
SQLite state files.
"""

# The shared Instock job fixtures are imported by name, and pytest passes them back in.
# ruff: noqa: F811

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from syncd.config import InstockConfig, Settings
from syncd.sandbox.instock import DEFAULT_TOKEN, ORG_ID, InstockSim
from tests.integration.jobkit import drop, query, run
from tests.integration.test_instock_jobs import (  # noqa: F401 - fixtures used by name
    SEED,
    cycle,
    make_cfg,
    order_csv,
    outbox_rows,
    send,
    stocked_articles,
)


@pytest.fixture(params=["newest_first", "random"])
def reordered_sim(request: pytest.FixtureRequest) -> Iterator[InstockSim]:
    with InstockSim(
        seed=SEED, articles=30, retry_after=0, order_list_order=request.param
    ) as running:
        yield running


def status_rows(settings: Settings) -> list[dict[str, Any]]:
    return [row for file in outbox_rows(settings, "order_status") for row in file]


def mirrored(settings: Settings) -> set[str]:
    return {r["order_id"] for r in query(settings, "SELECT order_id FROM instock_orders")}


def test_new_orders_are_found_whatever_the_list_order(
    reordered_sim: InstockSim, make_cfg: Callable[..., Settings]
) -> None:
    """With the orders list newest first, or in an order unrelated to time, an order syncd
    created and a reception order made on the floor are mirrored and followed to done
    within a run or two (the head of the list is read until nothing is new; a random
    order is covered by the full scan, here every run)."""
    sim = reordered_sim
    interval = 86400 if sim.order_list_order == "newest_first" else 0
    cfg = make_cfg(sim, page_size=10, instock_orders={"full_scan_interval": interval})
    a, b = stocked_articles(sim, 2)
    extra = [(f"HO-P{n}", [(a, 1)]) for n in range(12)]  # more than a page of older orders
    drop(cfg, "orders", order_csv(*extra))
    cycle(cfg)
    cycle(cfg)
    drop(cfg, "orders", order_csv(("HO-NEW", [(a, 1), (b, 1)])))
    cycle(cfg)  # created in Instock
    reception = sim.receive([(b, 4)])
    cycle(cfg)
    assert {"HO-NEW", reception} <= mirrored(cfg)
    sim.advance_order("HO-NEW")
    sim.advance_order("HO-NEW")
    sim.decant(reception)
    cycle(cfg)
    done = {(r["order_id"], r["order_status"]) for r in status_rows(cfg)}
    assert ("HO-NEW", "done") in done
    assert (reception, "done") in done


def test_a_reception_orders_decanting_attributes_reach_the_host(
    make_cfg: Callable[..., Settings],
) -> None:
    """The document's reception use case: an ASN attribute is added during decanting and
    read back through the API. syncd mirrored the order before decanting; once it is done
    it reads the order again and the host's order_status rows carry the ASN."""
    with InstockSim(seed=SEED, articles=30, retry_after=0) as sim:
        cfg = make_cfg(sim)
        (article,) = stocked_articles(sim, 1)
        reception = sim.receive([(article, 6)])
        cycle(cfg)
        (before,) = query(
            cfg, "SELECT attributes FROM instock_orders WHERE order_id = ?", [reception]
        )
        assert before["attributes"] == "{}"
        asn = {f"{sim.state.org_id}:asn": "ASN-1818AE4RF"}
        sim.decant(reception, attributes=asn)
        cycle(cfg)
        rows = [r for r in status_rows(cfg) if r["order_id"] == reception]
        assert rows
        assert rows[-1]["order_status"] == "done"
        assert rows[-1]["attributes"] == asn
        assert sim.count(f"GET /v1/{sim.site_id}/orders/{reception}") == 1


# --- the site's environment ----------------------------------------------------------------


def test_a_site_of_the_other_environment_stops_the_connector(
    make_cfg: Callable[..., Settings],
) -> None:
    """A production configuration pointed at a virtual (sandbox) site, or a sandbox one at a
    physical site, is refused before any site request: the run fails naming the site and
    the setting, a `site_environment` alert (not `auth`: the token was accepted) says what
    is wrong and which key to change, and stops the Instock jobs and the sender (nothing
    is written to the wrong warehouse) until the configuration is fixed and reloaded. A
    site the token does not see is a `site_unknown` alert naming site_id. A matching
    environment runs."""
    with InstockSim(seed=SEED, articles=30, retry_after=0) as sim:
        physical = "1.1.0-2"
        cases = [
            ("production", sim.site_id, "site_environment", 'is virtual: set it to "sandbox"'),
            ("sandbox", physical, "site_environment", 'is physical: set it to "production"'),
            ("sandbox", "9.9.9-9", "site_unknown", "connectors.instock.site_id = '9.9.9-9'"),
        ]
        for n, (environment, site, kind, words) in enumerate(cases):
            cfg = make_cfg(sim, name=f"env{n}")
            cfg.connectors.instock.environment = environment
            cfg.connectors.instock.site_id = site
            (a,) = stocked_articles(sim, 1)
            drop(cfg, "orders", order_csv((f"HO-E{n}", [(a, 1)])))
            sim.server.clear_log()
            failed = run(cfg, "instock.orders", expect="failed")  # the host order is queued
            assert words in (failed.error or "")
            (alert,) = query(cfg, "SELECT * FROM alerts WHERE resolved_at IS NULL")
            assert (alert["kind"], alert["subject"]) == (kind, "instock")
            assert words in alert["message"]
            assert "credentials" not in alert["message"]
            if (
                kind == "site_environment"
            ):  # what is wrong, and the key, in what `alerts list` shows
                assert alert["message"][:100].startswith(
                    f'connectors.instock.environment = "{environment}" but site {site} is '
                )
            skipped = run(cfg, "instock.inventory", expect="skipped")
            assert f"instock (alert {kind})" in (skipped.error or "")
            send(cfg)  # the sender refuses too: the order stays pending
            assert [a["kind"] for a in query(cfg, "SELECT kind FROM alerts")] == [kind]
            assert {r.route for r in sim.requests} == {"GET /v1/sites"}
            (intent,) = query(cfg, "SELECT status FROM outbox WHERE kind = 'orders.create'")
            assert intent["status"] == "pending"
        matching = make_cfg(sim, name="env-ok")
        matching.connectors.instock.environment = "production"
        matching.connectors.instock.site_id = "1.1.0-2"
        run(matching, "instock.inventory")


def test_environment_is_validated_by_check_config() -> None:
    """Only production and sandbox are environments; anything else names the key."""
    with pytest.raises(ValidationError, match="environment"):
        InstockConfig.model_validate({"environment": "staging"})


def test_syncd_sandbox_instock_lists_orders_in_the_order_asked_for() -> None:
    """`syncd sandbox instock --order-list-order newest_first` (a real process) lists a new
    order first, so an operator can try syncd against that reading; its banner says which
    reading is in force."""
    command = [sys.executable, "-m", "syncd.cli", "sandbox", "instock", "--port", "0"]
    command += ["--articles", "20", "--order-list-order", "newest_first"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline() for _ in range(3)]
        base_url = banner[0].split(": ", 1)[1].strip() + "/"  # .../v1/
        assert "orders listed: newest_first" in banner[2], banner
        headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=10) as http:
            site = http.get("sites").json()["sites"][0]["site_id"]
            article = http.get("articles").json()["articles"][0]["article_id"]
            for order_id in ("CLI-1", "CLI-2"):
                body = {
                    "org_id": ORG_ID,
                    "site_id": site,
                    "order_id": order_id,
                    "kind": "customer",
                    "placed_at": "2026-01-05T10:00:00Z",
                    "attributes": {},
                    "lines": [{"line_id": f"{order_id}-1", "article_id": article, "qty": 1}],
                }
                assert http.post(f"{site}/orders", json=body).status_code < 300
            listed = http.get(f"{site}/orders", params={"page_size": 1000}).json()
    finally:
        proc.terminate()
        proc.wait(10)
    ids = [o["order_id"] for o in listed["orders"]]
    assert ids[:2] == ["CLI-2", "CLI-1"], ids
