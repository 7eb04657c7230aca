"""The `dsorder` outbox destination: fulfilment totals and closes.

"Closed" answers (after a crash between the close and its record; matched by
meaning through `connectors.dsorder.options.closed_patterns`) count as done;
the close outcome moves the order to `closed`. DSOrder's warnings are kept with
the intent's result and logged.

Read back before resending: DSOrder can only be read through today's submitted list,
so an order's place in it (`closed`, `open`, `absent`, with whether it was submitted
today) is what `readback.compare` decides on, the same function as for Instock. It is
read before sending an intent whose last attempt ended without a clear answer
(`intent.unclear`), and after an answer that is unclear itself (a message no pattern
recognises): listed as closed, or no longer listed on the day it was submitted, is done;
otherwise the intent is sent (again). Both writes are safe to repeat (a fulfil carries
totals, never increments; a second close is answered "closed"), so the HTTP client may
repeat them after a lost answer too.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import structlog

from syncd.clock import iso, parse_iso, utcnow
from syncd.config import Settings
from syncd.connectors.dsorder import UNCLEAR, DSOrderClient, Listing, fulfil_lines
from syncd.errors import AlreadyDoneError, PermanentError, RemoteError, RetryableError
from syncd.logs import Logger
from syncd.send.base import Outcome, ReadBacks
from syncd.send.readback import compare
from syncd.state import Intent, Store
from syncd.state.mirror.dsorder import MarkClosed

DESTINATION = "dsorder"
log: Logger = structlog.get_logger("syncd.dsorder")


class DSOrderDestination:
    # A close after a refused fulfilment would freeze wrong totals: it waits instead.
    stop_key_on_reject = True

    def __init__(self, settings: Settings) -> None:
        self.client = DSOrderClient(settings.connectors.dsorder)
        self.zone = ZoneInfo(settings.daemon.site_timezone)
        self.readbacks = ReadBacks(DESTINATION)
        self._listings: dict[str, Listing] | None = None  # today's list, read once a drain

    def close(self) -> None:
        self.client.close()

    def send(self, intent: Intent) -> object:
        order_id = intent.payload["order_id"]
        if intent.kind not in ("fulfill", "close"):
            raise PermanentError(f"unknown intent kind {intent.kind!r}", connector=DESTINATION)
        if intent.unclear:
            # A failed read raises: retried later, still unclear.
            self._read_back(intent, self._listing_before_send(order_id), None)
        try:
            if intent.kind == "fulfill":
                warnings = self.client.fulfill(order_id, fulfil_lines(intent.payload["lines"]))
            else:
                warnings = self.client.close_order(order_id)
        except RetryableError as exc:
            if exc.code != UNCLEAR:
                raise  # a transport fault: the intent stays unclear, read back next time
            try:
                listing = self.client.order_listing(order_id)
            except RemoteError as read_failed:
                log.warning("dsorder_read_back_failed", order_id=order_id, error=str(read_failed))
                raise exc from None
            self._read_back(intent, listing, exc)
            raise
        if warnings:
            log.warning("dsorder_warnings", order_id=order_id, kind=intent.kind, warnings=warnings)
        return {"warnings": warnings} if warnings else None

    def _listing_before_send(self, order_id: str) -> str:
        """The order's place in today's list, read once per drain for every unclear intent
        of it: the list read at the first one is newer than any earlier attempt of the
        others (an intent is tried at most once a drain). After an unclear answer the list
        is read afresh (`order_listing`)."""
        if self._listings is None:
            self._listings = self.client.listings()
        return self._listings.get(order_id, "absent")

    def _read_back(self, intent: Intent, listing: str, error: RetryableError | None) -> None:
        """Raise AlreadyDoneError when `compare` finds the order done; return otherwise
        (the intent is sent, or after an unclear answer `error` is raised again)."""
        order_id = intent.payload["order_id"]
        submitted = intent.payload.get("order_date")
        today = utcnow().astimezone(self.zone).date()
        submitted_today = (
            parse_iso(submitted).astimezone(self.zone).date() == today if submitted else None
        )
        found: dict[str, Any] = {"listing": listing, "submitted_today": submitted_today}
        decision = compare(intent.kind, intent.payload, found)
        self.readbacks.count(decision.verdict)
        log.info(
            "dsorder_read_back",
            order_id=order_id,
            kind=intent.kind,
            answer=error.message if error is not None else None,
            listing=listing,
            submitted_today=submitted_today,
            verdict=decision.verdict,
        )
        if decision.verdict == "applied":
            said = error.message if error is not None else "the last attempt ended unclear"
            raise AlreadyDoneError(
                f"{said} (read back: order {listing} in today's submitted list)",
                connector=DESTINATION,
                code="closed_on_read_back",
                request_id=error.request_id if error is not None else None,
            )

    def on_outcome(self, store: Store, intent: Intent, outcome: Outcome, detail: object) -> None:
        if intent.kind == "close" and outcome in ("sent", "already_done"):
            MarkClosed(intent.payload["order_id"], iso()).apply(store)
