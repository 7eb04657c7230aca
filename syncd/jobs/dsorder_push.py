"""The `dsorder` outbox destination: fulfilment totals and closes.

"already closed" answers (after a crash between the close and its record)
count as done; the close outcome moves the order to `closed`. DSOrder's
warnings are kept with the intent's result and logged.
"""

from __future__ import annotations

from typing import Any

import structlog

from syncd.clock import iso
from syncd.config import Settings
from syncd.connectors.dsorder import DSOrderClient, fulfil_lines
from syncd.errors import PermanentError
from syncd.outbox import register_destination
from syncd.state import Intent, Store

DESTINATION = "dsorder"
log = structlog.get_logger("syncd.dsorder")


class DSOrderDestination:
    # A close after a refused fulfilment would freeze wrong totals: it waits instead.
    stop_key_on_reject = True

    def __init__(self, settings: Settings) -> None:
        self.client = DSOrderClient(settings.connectors.dsorder)

    def close(self) -> None:
        self.client.close()

    def send(self, intent: Intent) -> Any:
        order_id = intent.payload["order_id"]
        if intent.kind == "fulfill":
            warnings = self.client.fulfill(order_id, fulfil_lines(intent.payload["lines"]))
        elif intent.kind == "close":
            warnings = self.client.close_order(order_id)
        else:
            raise PermanentError(f"unknown intent kind {intent.kind!r}", connector=DESTINATION)
        if warnings:
            log.warning("dsorder_warnings", order_id=order_id, kind=intent.kind, warnings=warnings)
        return {"warnings": warnings} if warnings else None

    def on_outcome(self, store: Store, intent: Intent, outcome: str, detail: Any) -> None:
        if intent.kind == "close" and outcome in ("sent", "already_done"):
            now = iso()
            store.db.execute(
                "UPDATE dsorder_orders SET state = 'closed', closed_at = ?, updated_at = ? "
                "WHERE order_id = ?",
                [now, now, intent.payload["order_id"]],
            )


register_destination(DESTINATION, DSOrderDestination)
