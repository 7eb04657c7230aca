"""The `dsorder` outbox destination: fulfilment totals and closes.

"Closed" answers (after a crash between the close and its record; matched by
meaning through `connectors.dsorder.options.closed_patterns`) count as done;
the close outcome moves the order to `closed`. An answer that is unclear (a
message no pattern recognises) is not retried blindly: the order is read back
from today's submitted list first, and an order listed as closed, or no longer
listed on the day it was submitted, is done. DSOrder's warnings are kept with
the intent's result and logged.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import structlog

from syncd.clock import iso, parse_iso, utcnow
from syncd.config import Settings
from syncd.connectors.dsorder import UNCLEAR, DSOrderClient, fulfil_lines
from syncd.errors import AlreadyDoneError, PermanentError, RemoteError, RetryableError
from syncd.logs import Logger
from syncd.send.base import Outcome
from syncd.state import Intent, Store
from syncd.state.mirror.dsorder import MarkClosed

DESTINATION = "dsorder"
log: Logger = structlog.get_logger("syncd.dsorder")


def read_back_done(listing: str, submitted_today: bool | None) -> bool:
    """After an unclear answer to a close or fulfil: is the order done in DSOrder?

    Listed as closed: done. Not listed although it was submitted today (the list shows
    every order of the day that is still open): closed or gone, done. Not listed and
    submitted on an earlier day (or the day unknown): absence says nothing. Listed
    and open: the answer was a real failure; retry.
    """
    if listing == "closed":
        return True
    return listing == "absent" and submitted_today is True


class DSOrderDestination:
    # A close after a refused fulfilment would freeze wrong totals: it waits instead.
    stop_key_on_reject = True

    def __init__(self, settings: Settings) -> None:
        self.client = DSOrderClient(settings.connectors.dsorder)
        self.zone = ZoneInfo(settings.daemon.site_timezone)

    def close(self) -> None:
        self.client.close()

    def send(self, intent: Intent) -> object:
        order_id = intent.payload["order_id"]
        try:
            if intent.kind == "fulfill":
                warnings = self.client.fulfill(order_id, fulfil_lines(intent.payload["lines"]))
            elif intent.kind == "close":
                warnings = self.client.close_order(order_id)
            else:
                raise PermanentError(f"unknown intent kind {intent.kind!r}", connector=DESTINATION)
        except RetryableError as exc:
            if exc.code != UNCLEAR:
                raise  # a transport fault: nothing to read back, retry
            self._read_back(intent, exc)
            raise
        if warnings:
            log.warning("dsorder_warnings", order_id=order_id, kind=intent.kind, warnings=warnings)
        return {"warnings": warnings} if warnings else None

    def _read_back(self, intent: Intent, error: RetryableError) -> None:
        """Raise AlreadyDoneError when the order turns out to be done; return otherwise."""
        order_id = intent.payload["order_id"]
        try:
            listing = self.client.order_listing(order_id)
        except RemoteError as exc:
            log.warning("dsorder_read_back_failed", order_id=order_id, error=str(exc))
            return
        submitted = intent.payload.get("order_date")
        today = utcnow().astimezone(self.zone).date()
        submitted_today = (
            parse_iso(submitted).astimezone(self.zone).date() == today if submitted else None
        )
        done = read_back_done(listing, submitted_today)
        log.info(
            "dsorder_read_back",
            order_id=order_id,
            kind=intent.kind,
            answer=error.message,
            listing=listing,
            submitted_today=submitted_today,
            done=done,
        )
        if done:
            raise AlreadyDoneError(
                f"{error.message} (read back: order {listing} in today's submitted list)",
                connector=DESTINATION,
                code="closed_on_read_back",
                request_id=error.request_id,
            )

    def on_outcome(self, store: Store, intent: Intent, outcome: Outcome, detail: object) -> None:
        if intent.kind == "close" and outcome in ("sent", "already_done"):
            MarkClosed(intent.payload["order_id"], iso()).apply(store)
