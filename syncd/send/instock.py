"""The `instock` outbox destination: turns intents into Instock calls.

Intent kinds: `articles.upload` (a bulk of at most 1000), `articles.update`,
`orders.create`, `orders.update`, `orders.cancel`. The outcome of each is
written back into `instock_article_sync` / `instock_order_sync` in the same
transaction as the outbox row, so the jobs' "what Instock accepted" record and
the outbox never disagree.

An order create never races its articles: while an article of the order has an
upload or update pending in the outbox (`instock_article_sync.status = 'queued'`)
the create is deferred (`defer`), and an "article not found" 404 on create is
"not yet" (retried, bounded by the outbox's attempts) while an article of the
order is not known to Instock yet: queued, or in the host catalog but not yet
planned by `instock.articles`.

A refused bulk upload is split in halves until the bad articles are isolated;
only they are refused (with Instock's reason), the rest is accepted. An
article that "cannot be created" because it already exists (a replay after a
crash, or created by someone else) is compared and updated if it differs.

A write whose last attempt ended without a clear answer (`intent.unclear`: a timeout
or dropped connection after sending, a 5xx, a kill -9 mid-send) is read back by its
natural key before it is sent again, and `readback.compare` decides for every kind:
found as intended -> done (as an "already exists" answer); not applied -> sent; found
otherwise -> rejected, the reject holding both versions. What is read: the order by id
(create, update), its status (cancel), each article of a bulk by id (upload: the found
ones are done, the missing ones sent, the others refused one by one), the article
(update). Without the read, a remote that took a duplicate order id, or a lost answer to
a bulk, would depend on "already exists" answers the document does not promise. The
client repeats none of these creates itself after a possibly applied failure
(`idempotent=False` in the connector): the next attempt reads first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from syncd.clock import iso
from syncd.config import Settings
from syncd.connectors.instock import InstockClient, Order
from syncd.errors import AlreadyDoneError, DivergedError, PermanentError, RetryableError
from syncd.logs import redactor
from syncd.send.base import Outcome, ReadBacks
from syncd.send.readback import Decision, Verdict, compare
from syncd.state import Intent, NewReject, Store
from syncd.state.mirror.instock import (
    ArticleAccepted,
    ArticleRefused,
    OrderOutcome,
    queued_articles,
    unplanned_articles,
)

DESTINATION = "instock"
ARTICLE_FIELDS = ("article_id", "name", "is_serial_numbered", "dimensions", "attributes")


def same_article(remote: Mapping[str, Any], local: Mapping[str, Any]) -> bool:
    """Equal as Instock means it: dimensions compare as numbers ("7.30" == "7.3")."""
    for field in ARTICLE_FIELDS:
        if field not in local:
            continue
        if field == "dimensions":
            if _dims(remote.get(field)) != _dims(local.get(field)):
                return False
        elif (remote.get(field) or None) != (local.get(field) or None):
            return False
    return True


def _dims(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in (value or {}).items():
        try:
            out[key] = Decimal(str(item)) if key != "uom" else item
        except InvalidOperation:
            out[key] = item
    return out


def order_articles(order: Mapping[str, Any]) -> list[str]:
    """The distinct article ids of an order payload's lines, in line order."""
    return list(dict.fromkeys(str(line["article_id"]) for line in order.get("lines") or []))


class InstockDestination:
    def __init__(self, settings: Settings) -> None:
        self.client = InstockClient(settings.connectors.instock)
        self.articles_job = settings.job("instock.articles").enabled
        # Articles of the create about to be sent that Instock may not know yet
        # (worked out in `defer`, just before `send`): a 404 for them is "not yet".
        self._unsettled: tuple[int, list[str]] = (0, [])
        self.readbacks = ReadBacks(DESTINATION)

    def defer(self, store: Store, intent: Intent) -> str | None:
        """An order create waits while an upload of one of its articles is pending."""
        if intent.kind != "orders.create":
            return None
        articles = order_articles(intent.payload["order"])
        if not articles:
            return None
        queued = queued_articles(store, articles)
        unplanned = unplanned_articles(store, articles) if self.articles_job else []
        self._unsettled = (intent.id, queued + unplanned)
        if queued:
            return "upload of article(s) " + ", ".join(queued) + " pending"
        return None

    def close(self) -> None:
        self.client.close()

    def send(self, intent: Intent) -> object:
        self.client.check_site()  # never write to a site of the other environment
        payload = intent.payload
        unclear = intent.unclear
        match intent.kind:
            case "articles.upload":
                if unclear:
                    return self._upload_read_back(payload["articles"])
                return self._upload(payload["articles"])
            case "articles.update":
                article = payload["article"]
                if unclear:
                    found = self.client.find_article(article["article_id"])
                    self._settle(
                        intent.kind,
                        f"article {article['article_id']}",
                        article,
                        None if found is None else found.model_dump(),
                    )
                self.client.update_article(article)
                return None
            case "orders.create":
                if unclear:
                    self._read_back_order(intent.kind, payload["order"])
                self._create_order(intent)
                return None
            case "orders.update":
                current = self._read_back_order(intent.kind, payload["order"]) if unclear else None
                self.client.update_order(payload["order"], current=current)
                return None
            case "orders.cancel":
                if unclear:
                    status = self.client.find_order_status(payload["order_id"])
                    self._settle(
                        intent.kind,
                        f"order {payload['order_id']}",
                        {"order_status": "canceled"},
                        None if status is None else {"order_status": status.order_status},
                    )
                self.client.cancel_order(payload["order_id"])
                return None
        raise PermanentError(f"unknown intent kind {intent.kind!r}", connector=DESTINATION)

    # -- read back before resending ------------------------------------------

    def _read_back_order(self, kind: str, order: Mapping[str, Any]) -> Order | None:
        """An earlier attempt may have applied the create / update: read the order by id.
        Returns the order read (None: not there) when it is to be sent; raises
        AlreadyDoneError / DivergedError else."""
        remote = self.client.find_order(order["order_id"])
        found = None if remote is None else remote.model_dump(exclude_none=True)
        self._settle(kind, f"order {order['order_id']}", order, found)
        return remote

    def _settle(
        self, kind: str, what: str, intended: Mapping[str, Any], found: dict[str, Any] | None
    ) -> None:
        """Count the verdict; return when the write is to be sent, raise else."""
        decision = compare(kind, intended, found)
        self.readbacks.count(decision.verdict)
        if decision.verdict == "applied":
            raise AlreadyDoneError(
                f"{what} found in Instock as intended (read back after an attempt "
                "without a clear answer)",
                connector=DESTINATION,
                code="read_back_applied",
            )
        if decision.verdict == "diverged":
            raise DivergedError(
                f"{what}: {_diverged(decision)} (read back after an attempt without a clear "
                "answer); the reject holds both versions",
                connector=DESTINATION,
                code="read_back_diverged",
                reject_payload=decision.reject_payload(dict(intended), found),
            )

    def _upload_read_back(self, articles: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """A bulk whose last attempt was unclear: each article read by id first. Found as
        intended: accepted, not sent again; not there: uploaded (in one bulk, split on
        refusal as usual); found otherwise: refused, its reject holding both versions."""
        accepted: list[str] = []
        refused: dict[str, str] = {}
        diverged: dict[str, Any] = {}
        missing: list[Mapping[str, Any]] = []
        verdicts: Counter[Verdict] = Counter()
        for article in articles:
            article_id = article["article_id"]
            remote = self.client.find_article(article_id)
            found = None if remote is None else remote.model_dump()
            decision = compare("articles.upload", article, found)
            verdicts[decision.verdict] += 1
            if decision.verdict == "applied":
                accepted.append(article_id)
            elif decision.verdict == "not_applied":
                missing.append(article)
            else:
                refused[article_id] = (
                    f"article {article_id}: {_diverged(decision)} (read back after an "
                    "attempt without a clear answer)"
                )
                diverged[article_id] = decision.reject_payload(dict(article), found)
        for verdict, n in verdicts.items():  # counted once every article was read
            self.readbacks.count(verdict, n)
        if missing:
            sent = self._upload(missing)
            accepted.extend(sent["accepted"])
            refused.update(sent["refused"])
        result: dict[str, Any] = {"accepted": accepted, "refused": refused}
        if diverged:
            result["diverged"] = diverged
        return result

    def _create_order(self, intent: Intent) -> None:
        try:
            self.client.create_order(intent.payload["order"])
        except PermanentError as exc:
            intent_id, unsettled = self._unsettled
            if exc.status != 404 or intent_id != intent.id or not unsettled:
                raise
            raise RetryableError(
                f"{exc.message} (not yet: article(s) {', '.join(unsettled)} still to be "
                "uploaded by instock.articles)",
                connector=DESTINATION,
                status=404,
                code="article_not_yet_uploaded",
                request_id=exc.request_id,
            ) from None

    # -- bulk upload with isolation ----------------------------------------

    def _upload(self, articles: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        accepted: list[str] = []
        refused: dict[str, str] = {}

        def attempt(batch: Sequence[Mapping[str, Any]]) -> None:
            try:
                self.client.upload_articles(batch)
            except PermanentError as exc:
                if len(batch) == 1:
                    self._resolve_single(batch[0], exc, accepted, refused)
                    return
                middle = len(batch) // 2
                attempt(batch[:middle])
                attempt(batch[middle:])
                return
            accepted.extend(a["article_id"] for a in batch)

        attempt(articles)
        return {"accepted": accepted, "refused": refused}

    def _resolve_single(
        self,
        article: Mapping[str, Any],
        error: PermanentError,
        accepted: list[str],
        refused: dict[str, str],
    ) -> None:
        article_id = article["article_id"]
        if error.code == "resource_cannot_be_created":
            try:
                remote = self.client.get_article(article_id).model_dump()
            except PermanentError:
                remote = None
            if remote is not None:
                if not same_article(remote, article):
                    try:
                        self.client.update_article(article)
                    except PermanentError as exc:
                        refused[article_id] = str(exc)
                        return
                accepted.append(article_id)
                return
        refused[article_id] = str(error)

    # -- outcomes, in the outbox transaction -------------------------------

    def on_outcome(self, store: Store, intent: Intent, outcome: Outcome, detail: object) -> None:
        now = iso()
        payload = intent.payload
        if intent.kind == "articles.upload":
            hashes: dict[str, str] = payload["hashes"]
            if outcome == "rejected":
                refused = dict.fromkeys(hashes, str(detail))
                accepted: list[str] = []
            else:
                result = detail if isinstance(detail, dict) and "accepted" in detail else {}
                accepted = list(result.get("accepted", hashes if not result else []))
                refused = dict(result.get("refused", {}))
            for article_id in accepted:
                ArticleAccepted(article_id, hashes[article_id], now).apply(store)
            articles: dict[str, Any] = {a["article_id"]: a for a in payload["articles"]}
            if isinstance(detail, dict):  # both versions of an article found otherwise
                articles.update(detail.get("diverged") or {})
            for article_id, reason in refused.items():
                _article_refused(article_id, reason, now).apply(store)
                if outcome != "rejected":  # the sender already made a reject for the intent
                    store.add_rejects(
                        [
                            NewReject(
                                source="instock:articles",
                                reference=f"article {article_id}",
                                reason=f"Instock refused the article: {reason}",
                                payload=articles.get(article_id),
                            )
                        ]
                    )
        elif intent.kind == "articles.update":
            article_id = payload["article"]["article_id"]
            if outcome == "rejected":
                _article_refused(article_id, str(detail), now).apply(store)
            else:
                ArticleAccepted(article_id, payload["hash"], now).apply(store)
        elif intent.kind.startswith("orders."):
            order_id = payload.get("order_id") or payload["order"]["order_id"]
            OrderOutcome(
                order_id,
                intent.kind.removeprefix("orders."),
                "refused" if outcome == "rejected" else "accepted",
                redactor.text(str(detail)) if outcome == "rejected" else None,
                now,
            ).apply(store)


def _diverged(decision: Decision) -> str:
    fields = ", ".join(d.field for d in decision.differences)
    return f"{decision.reason} ({fields})" if fields else decision.reason


def _article_refused(article_id: str, reason: str, now: str) -> ArticleRefused:
    # Instock's answer may quote the token.
    return ArticleRefused(article_id, redactor.text(reason), now)
