"""A stateful Instock (ASRS cloud) simulator over real HTTP, following instock-api.txt.

URLs are the document's, under ``/v1``: ``/v1/sites``, ``/v1/articles[/{article_id}]``,
``/v1/{site_id}/orders[/{order_id}[/status]]``, ``/v1/{site_id}/ordertasks/{ordertask_id}``,
``/v1/{site_id}/inventory[/{article_id}]``, ``/v1/{site_id}/moves[/{article_id}]``. Every
request needs ``Authorization: Bearer <token>``; errors are ``{"code", "message"}``. Each
response carries ``Instock-Request-ID`` (the text's spelling) and ``Instock-Response-ID`` (the
OpenAPI file's) with the same value; ``Instock-Correlation-ID`` is recorded in the log.

Shapes the document collapses, as the vendor's OpenAPI file gives them (all quantities ints):

- order status line: ``{"line_id", "article_id", "qty": {"requested", "reserved", "free"}}``
  where ``requested`` is the line quantity, ``reserved`` the quantity reserved for this line
  (0 while registered or when canceled for short stock, the line quantity once reserved and
  still after done, as in the document's examples) and ``free`` the article's live free stock.
- ordertask line: ``{"line_id", "article_id", "to_cells": [{"to_cell_id", "qty"}]}``.
- move: ``{"article_id", "qty", "move_timestamp", "user_id", "order_id", "from_cell_id",
  "to_cell_id", "from_account_id", "to_account_id"}``; ``qty`` is always positive (the
  accounts say the direction: ``stock -> customer`` for a pick, ``reception -> stock`` for a
  decant, ``adjustment <-> stock`` for an adjustment). Every move belongs to an ordertask of an
  order, as the document says of robot actions, and carries that ``order_id``: picks to a
  customer order, decanting to a reception order, and every inventory adjustment (the debug
  endpoint included) to an adjustment order made for it (``ADJ...``, done at once, with one
  done ordertask). Timestamps have whole-second precision, so identical moves happen.
- ``ordertask_ids`` is ``[""]`` while an order has no ordertasks, as the document shows.

**Fulfilled quantity per order line** (what the client reports to DSOrder): the sum of
``to_cells[].qty`` for that ``line_id`` over the order's ordertasks whose status is ``done``.
Equivalently, per article: the sum of ``qty`` of the moves carrying that ``order_id`` and
``article_id`` (the simulator writes one pick move per ``to_cells`` entry when the order
becomes done). So it is the requested quantity once the order is ``done``, and 0 for
``registered``, ``reserved`` and ``canceled`` orders. ``InstockSim.fulfilled`` computes it.

Rules modelled: page_size 10..1000 (default 10) and opaque keyset cursors on every list
(articles by id, inventory by article id, orders by creation, moves newest first); inventory
list omits all-zero rows; moves need both timestamps (inclusive bounds, RFC 3339 with an
offset); bulk upload <= 1000 articles, all-or-nothing, create-only (an existing id fails the
batch), serial-numbered refused; article update refused once it has moves; orders
``registered -> reserved -> done`` or ``canceled``; update/cancel only while registered.
Interpretations: the debug endpoints (advance, adjust) answer 403 ``forbidden`` on a non-virtual
site; adjust ``qty`` is a delta on free stock (0 empties it; going below 0 is a 400).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import random
import re
import sys
import threading
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from syncd.sandbox.base import (
    ApiError,
    Request,
    Response,
    SandboxServer,
    Simulator,
    dumps,
)

DEFAULT_TOKEN: Final = "instock-sandbox-token"  # noqa: S105 - a sandbox credential, not a secret
DEFAULT_SITES: Final = ("1.1.0-1", "1.1.0-2")
ORG_ID: Final = "org_sandbox"
PAGE_MIN: Final = 10
PAGE_MAX: Final = 1000
PAGE_DEFAULT: Final = 10
BULK_MAX: Final = 1000
NO_ORDERTASKS: Final = ("",)

ARTICLE_ID_RE: Final = re.compile(r"^[a-zA-Z0-9_+.]+$")
ORDER_ID_RE: Final = re.compile(r"^[a-zA-Z0-9_+.:-]{1,128}$")
ORDER_FIELDS: Final = ("org_id", "site_id", "order_id", "kind", "placed_at", "attributes", "lines")
ORDER_LIST_ORDERS: Final = ("created", "newest_first", "random")
DUPLICATE_ORDER_IDS: Final = ("refuse", "accept")
"""What a create with an order id Instock already has gets. The document does not say the
order id is unique (only that `resource_cannot_be_created` may mean "already exists"):
``refuse`` answers that; ``accept`` (a test-only reading) takes the order again, as a
second order kept in ``InstockState.duplicate_orders``."""
"""Orders list orders: by creation (new orders appended), newest first, or a stable order
unrelated to time (a hash of the order id, as a list sorted by a random key would be)."""
PLACED_AT_TEXTS: Final = ("as_sent", "normalized")
"""How an order's `placed_at` reads back. The document types it "RFC 3339 date-time" and
shows whole seconds with a Z, but does not say the text sent is kept: ``as_sent``
(default) echoes it; ``normalized`` (the other reading) keeps the instant only and
answers it as whole seconds UTC with a Z (``...07:38:39.000+00:00`` reads back as
``...07:38:39Z``)."""
PICK_MOVES: Final = ("at_done", "before_done")
"""When a customer order's pick moves are written. The document says moves carry the
order_id but not which status changes come with moves: ``at_done`` (default) writes them
when the order turns done (the picks complete it; reservation and cancellation write
none); ``before_done`` (the other reading) writes them, with the ordertasks done, on one
step while the order stays reserved, and the next step turns it done with no move."""
TERMINAL: Final = frozenset({"done", "canceled"})
_OK_BODY: Final = dumps("Successful operation.")
_EMPTY_BODY: Final = dumps("")


# --- model -------------------------------------------------------------------------------


@dataclass(slots=True)
class Stock:
    """Inventory of one article at one site; ``registered`` is demand of registered orders."""

    free: int = 0
    reserved: int = 0
    registered: int = 0

    def is_zero(self) -> bool:
        return self.free == 0 and self.reserved == 0 and self.registered == 0

    def as_json(self) -> dict[str, int]:
        return {"reserved": self.reserved, "free": self.free, "registered": self.registered}


@dataclass(slots=True)
class Line:
    line_id: str
    article_id: str
    qty: int

    def as_json(self) -> dict[str, Any]:
        return {"line_id": self.line_id, "article_id": self.article_id, "qty": self.qty}


@dataclass(slots=True)
class Order:
    order_id: str
    site_id: str
    kind: str
    placed_at: str
    attributes: dict[str, str]
    lines: list[Line]
    status: str = "registered"
    ordertask_ids: list[str] = field(default_factory=list)
    reserved: dict[str, int] = field(default_factory=dict)  # line_id -> reserved qty
    status_changed_at: float = 0.0
    picked: bool = False  # pick moves written (``pick_moves="before_done"``: still reserved)

    def as_json(self, org_id: str) -> dict[str, Any]:
        return {
            "org_id": org_id,
            "site_id": self.site_id,
            "order_id": self.order_id,
            "kind": self.kind,
            "placed_at": self.placed_at,
            "attributes": self.attributes,
            "lines": [line.as_json() for line in self.lines],
        }


@dataclass(slots=True)
class OrderTask:
    ordertask_id: str
    order_id: str
    site_id: str
    status: str
    lines: list[dict[str, Any]]  # {"line_id", "article_id", "to_cells": [{"to_cell_id", "qty"}]}

    def as_json(self, org_id: str) -> dict[str, Any]:
        return {
            "org_id": org_id,
            "site_id": self.site_id,
            "order_id": self.order_id,
            "ordertask_id": self.ordertask_id,
            "ordertask_status": self.status,
            "lines": self.lines,
        }


@dataclass(slots=True)
class Move:
    """One move; ``ts`` is Unix seconds, ``seq`` breaks ties so ordering is total and stable."""

    seq: int
    site_id: str
    article_id: str
    qty: int
    ts: int
    user_id: str
    order_id: str | None
    from_cell_id: str
    to_cell_id: str
    from_account_id: str
    to_account_id: str
    _raw: bytes = b""

    @property
    def key(self) -> tuple[int, int]:
        return (self.ts, self.seq)

    @property
    def move_timestamp(self) -> str:
        return rfc3339(self.ts)

    def as_json(self) -> dict[str, Any]:
        return {
            "article_id": self.article_id,
            "qty": self.qty,
            "move_timestamp": self.move_timestamp,
            "user_id": self.user_id,
            "order_id": self.order_id,
            "from_cell_id": self.from_cell_id,
            "to_cell_id": self.to_cell_id,
            "from_account_id": self.from_account_id,
            "to_account_id": self.to_account_id,
        }

    def encoded(self) -> bytes:
        if not self._raw:
            self._raw = dumps(self.as_json())
        return self._raw


def rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def parse_rfc3339(text: str) -> float:
    """RFC 3339 with a mandatory offset (``Z`` or ``+hh:mm``); naive times are refused."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        raise ValueError("timestamp has no offset")
    return moment.timestamp()


class InstockState:
    """The whole simulated organisation; guard every access with ``lock``.

    ``articles`` (id -> article JSON), ``inventory`` (site -> article -> Stock), ``orders``
    (id -> Order, org-unique), ``ordertasks`` (id -> OrderTask) and ``moves`` (site -> moves,
    oldest first) are plain containers for tests to read; mutate through ``InstockSim``.
    """

    def __init__(self, org_id: str, sites: Sequence[tuple[str, bool]]) -> None:
        self.lock = threading.RLock()
        self.org_id = org_id
        self.sites: dict[str, bool] = dict(sites)
        self.articles: dict[str, dict[str, Any]] = {}
        self.article_ids: list[str] = []  # sorted, the list order of GET /articles
        self.inventory: dict[str, dict[str, Stock]] = {s: {} for s in self.sites}
        self.orders: dict[str, Order] = {}
        self.duplicate_orders: list[Order] = []  # accepted again under a known order id
        self.site_orders: dict[str, list[str]] = {s: [] for s in self.sites}
        self.ordertasks: dict[str, OrderTask] = {}
        self.moves: dict[str, list[Move]] = {s: [] for s in self.sites}
        self._move_keys: dict[str, list[tuple[int, int]]] = {s: [] for s in self.sites}
        self._article_moves: dict[str, dict[str, list[Move]]] = {s: {} for s in self.sites}
        self._article_move_keys: dict[str, dict[str, list[tuple[int, int]]]] = {
            s: {} for s in self.sites
        }
        self._article_raw: dict[str, bytes] = {}
        self._stock_raw: dict[tuple[str, str], bytes] = {}
        # (kind, key) -> the raw JSON text answered instead of the real record (tests).
        self.overrides: dict[tuple[str, str], bytes] = {}
        self._order_raw: dict[str, bytes] = {}
        self._move_seq = 0
        self._ordertask_seq = 0
        self.adjustment_seq = 0

    # articles

    def put_article(self, article: dict[str, Any]) -> None:
        article_id = article["article_id"]
        if article_id not in self.articles:
            insort(self.article_ids, article_id)
        self.articles[article_id] = article
        self._article_raw.pop(article_id, None)

    def article_raw(self, article_id: str) -> bytes:
        raw = self._article_raw.get(article_id)
        if raw is None:
            raw = self._article_raw[article_id] = dumps(self.articles[article_id])
        return raw

    def has_moves(self, article_id: str) -> bool:
        return any(article_id in per_site for per_site in self._article_moves.values())

    # inventory

    def stock(self, site_id: str, article_id: str) -> Stock:
        """The live Stock object (created at zero); call ``touched`` after changing it."""
        per_site = self.inventory[site_id]
        found = per_site.get(article_id)
        if found is None:
            found = per_site[article_id] = Stock()
        return found

    def touched(self, site_id: str, article_id: str) -> None:
        self._stock_raw.pop((site_id, article_id), None)

    def stock_raw(self, site_id: str, article_id: str) -> bytes:
        raw = self._stock_raw.get((site_id, article_id))
        if raw is None:
            stock = self.inventory[site_id].get(article_id) or Stock()
            raw = dumps({"article_id": article_id, "qty": stock.as_json()})
            self._stock_raw[(site_id, article_id)] = raw
        return raw

    # orders

    def add_order(self, order: Order) -> None:
        self.orders[order.order_id] = order
        self.site_orders[order.site_id].append(order.order_id)

    def order_raw(self, order_id: str) -> bytes:
        raw = self._order_raw.get(order_id)
        if raw is None:
            data = self.orders[order_id].as_json(self.org_id)
            del data["org_id"]  # the list schema has no org_id per item
            raw = self._order_raw[order_id] = dumps(data)
        return raw

    def order_changed(self, order_id: str) -> None:
        self._order_raw.pop(order_id, None)

    def next_ordertask_id(self) -> str:
        self._ordertask_seq += 1
        return f"ot{self._ordertask_seq:07d}"

    # moves

    def add_move(self, site_id: str, article_id: str, qty: int, ts: int, **fields: Any) -> Move:
        self._move_seq += 1
        move = Move(self._move_seq, site_id, article_id, qty, ts, **fields)
        key = move.key
        keys = self._move_keys[site_id]
        moves = self.moves[site_id]
        if not keys or keys[-1] < key:
            keys.append(key)
            moves.append(move)
        else:
            at = bisect_left(keys, key)
            keys.insert(at, key)
            moves.insert(at, move)
        per_keys = self._article_move_keys[site_id].setdefault(article_id, [])
        per_moves = self._article_moves[site_id].setdefault(article_id, [])
        at = bisect_left(per_keys, key)
        per_keys.insert(at, key)
        per_moves.insert(at, move)
        return move

    def move_index(
        self, site_id: str, article_id: str | None
    ) -> tuple[list[Move], list[tuple[int, int]]]:
        if article_id is None:
            return self.moves[site_id], self._move_keys[site_id]
        return (
            self._article_moves[site_id].get(article_id, []),
            self._article_move_keys[site_id].get(article_id, []),
        )


# --- cursors and paging --------------------------------------------------------------------


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def _not_found(name: str, value: str) -> ApiError:
    return ApiError(404, "resource_not_found", f"{name} doesn't exist: {value}.")


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(dumps(list(parts))).rstrip(b"=").decode()


def decode_cursor(cursor: str, tag: str, scope: str) -> list[Any]:
    """Decode a cursor made by ``encode_cursor(tag, scope, ...)``; anything else is a 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except (ValueError, binascii.Error) as exc:
        raise _bad("start_cursor is not valid.") from exc
    if not isinstance(parts, list) or len(parts) < 3 or parts[:2] != [tag, scope]:
        raise _bad("start_cursor is not valid for this list.")
    return parts[2:]


def _string_cursor(cursor: str, tag: str, scope: str) -> str:
    parts = decode_cursor(cursor, tag, scope)
    if len(parts) != 1 or not isinstance(parts[0], str):
        raise _bad("start_cursor is not valid.")
    return parts[0]


def page_size(query: dict[str, str] | Any) -> int:
    raw = query.get("page_size")
    if raw is None:
        return PAGE_DEFAULT
    try:
        size = int(raw)
    except ValueError as exc:
        raise _bad("page_size must be an integer.") from exc
    if not PAGE_MIN <= size <= PAGE_MAX:
        raise _bad(f"page_size must be between {PAGE_MIN} and {PAGE_MAX}.")
    return size


def render_page(meta: dict[str, Any], key: str, items: Iterable[bytes]) -> bytes:
    """Splice pre-serialised items into the page JSON: no per-request re-encoding."""
    return b"".join((dumps(meta)[:-1], b',"', key.encode(), b'":[', b",".join(items), b"]}"))


def _page_meta(has_more: bool, cursor: str) -> dict[str, Any]:
    return {"has_more": has_more, "next_cursor": cursor if has_more else ""}


# --- validation ----------------------------------------------------------------------------


def _check_attributes(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "attributes must be an object"
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return "attributes values must be strings"
    return None


def _check_dimensions(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "dimensions must be an object"
    for name, item in value.items():
        if name not in ("x", "y", "z", "uom"):
            return f"dimensions has an unknown field {name!r}"
        if not isinstance(item, str):
            return f"dimensions.{name} must be a string"
    if "uom" in value and value["uom"] not in ("m", "in"):
        return "dimensions.uom must be 'm' or 'in'"
    return None


def _article_problem(obj: dict[str, Any], *, complete: bool) -> str | None:
    article_id, name = obj.get("article_id"), obj.get("name")
    serial = obj.get("is_serial_numbered", False)
    missing = [f for f in ("is_serial_numbered", "dimensions", "attributes") if f not in obj]
    checks = (
        (
            not (isinstance(article_id, str) and ARTICLE_ID_RE.match(article_id)),
            "article_id must match ^[a-zA-Z0-9_+.]+$",
        ),
        (not (isinstance(name, str) and name.strip()), "name is required"),
        (not isinstance(serial, bool), "is_serial_numbered must be a boolean"),
        (serial is True, "articles with is_serial_numbered: true cannot be uploaded or updated"),
        (
            complete and bool(missing),
            f"a complete article record is required, missing {', '.join(missing)}",
        ),
    )
    for failed, reason in checks:
        if failed:
            return reason
    return _check_dimensions(obj.get("dimensions", {})) or _check_attributes(
        obj.get("attributes", {})
    )


def validate_article(obj: Any, *, complete: bool) -> tuple[dict[str, Any] | None, str]:
    """Return (normalised article, "") or (None, reason). ``complete`` is PUT's all-fields rule."""
    if not isinstance(obj, dict):
        return None, "article must be an object"
    reason = _article_problem(obj, complete=complete)
    if reason:
        return None, reason
    return {
        "article_id": obj["article_id"],
        "name": obj["name"],
        "is_serial_numbered": False,
        "dimensions": dict(obj.get("dimensions", {})),
        "attributes": dict(obj.get("attributes", {})),
    }, ""


def _parse_placed_at(value: Any, now: float) -> str:
    if value is None:
        return rfc3339(now)
    if not isinstance(value, str):
        raise _bad("placed_at must be an RFC 3339 string.")
    try:
        parse_rfc3339(value)
    except ValueError as exc:
        raise _bad("placed_at must be an RFC 3339 timestamp with an offset.") from exc
    return value


def _parse_lines(raw_lines: Any) -> list[Line]:
    if not isinstance(raw_lines, list) or not raw_lines:
        raise _bad("lines must be a non-empty list.")
    lines: list[Line] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_lines):
        if not isinstance(raw, dict):
            raise _bad(f"lines[{index}] must be an object.")
        line_id, article_id, qty = raw.get("line_id"), raw.get("article_id"), raw.get("qty")
        if not isinstance(line_id, str) or not ORDER_ID_RE.match(line_id):
            raise _bad(f"lines[{index}].line_id must be 1..128 characters of [a-zA-Z0-9_+.:-].")
        if line_id in seen:
            raise _bad(f"lines[{index}].line_id {line_id} is repeated.")
        seen.add(line_id)
        if not isinstance(article_id, str) or not ARTICLE_ID_RE.match(article_id):
            raise _bad(f"lines[{index}].article_id is not a valid article_id.")
        if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
            raise _bad(f"lines[{index}].qty must be a positive integer.")
        lines.append(Line(line_id, article_id, qty))
    return lines


# "Before integration, your IT and Instock teams should agree upon attributes that will be
# configured specifically for your site(s)": an order attribute outside the site's agreed set
# is refused (``InstockSim(order_attributes=...)``; None accepts any). The sandbox site agrees
# on the document's own example, cutoff_time, and on wave.
DEFAULT_ORDER_ATTRIBUTES: Final = ("cutoff_time", "wave")


def _check_order_attribute_names(attributes: dict[str, Any], agreed: frozenset[str] | None) -> None:
    unknown = sorted(set(attributes) - agreed) if agreed is not None else []
    if unknown:
        raise _bad(f"attributes.{unknown[0]} is not a custom attribute configured for this site.")


def _parse_order_body(body: Any, site_id: str, now: float) -> Order:
    if not isinstance(body, dict):
        raise _bad("Request body must be a JSON object.")
    order_id = body.get("order_id")
    if not isinstance(order_id, str) or not ORDER_ID_RE.match(order_id):
        raise _bad("order_id must be 1..128 characters of [a-zA-Z0-9_+.:-].")
    if body.get("site_id", site_id) != site_id:
        raise _bad("site_id in the body does not match the path.")
    if body.get("kind", "customer") != "customer":
        raise ApiError(400, "resource_cannot_be_created", "Only customer order allowed.")
    placed_at = _parse_placed_at(body.get("placed_at"), now)
    attributes = body.get("attributes", {})
    reason = _check_attributes(attributes)
    if reason:
        raise _bad(reason + ".")
    lines = _parse_lines(body.get("lines"))
    return Order(order_id, site_id, "customer", placed_at, dict(attributes), lines)


# --- the simulator -------------------------------------------------------------------------

_WORDS_A: Final = ("Original", "Honey", "Organic", "Classic", "Spicy", "Light", "Family", "Mini")
_WORDS_B: Final = (
    "Oat Cereal",
    "Tomato Soup",
    "Coffee Beans",
    "Pasta",
    "Green Tea",
    "Crackers",
    "Hand Soap",
    "Batteries AA",
    "Chain Oil",
    "Saw Chain",
    "Hooded Sweatshirt",
)
_CATEGORIES: Final = ("Cereals & Bars", "Pantry", "Beverages", "Household", "Outdoor", "Apparel")


class InstockSim(Simulator):
    """The Instock simulator: state, HTTP routes and Python-side levers for tests.

    ``InstockSim(seed=S, articles=N)`` generates sites, N articles (about 2% serial-numbered,
    about 10% never decanted so all-zero, about 5% decanted then emptied) with stock at the
    first (virtual) site, reception orders, done customer orders with their ordertasks and a
    history of moves over the last 30 days. Same seed, same data (timestamps are relative to
    ``clock()`` at construction).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        articles: int = 100,
        token: str = DEFAULT_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        org_id: str = ORG_ID,
        sites: Sequence[str] = DEFAULT_SITES,
        clock: Callable[[], float] = time.time,
        retry_after: int = 1,
        slow_seconds: float = 2.0,
        order_list_order: str = "created",
        order_attributes: Iterable[str] | None = DEFAULT_ORDER_ATTRIBUTES,
        duplicate_order_ids: str = "refuse",
        pick_moves: str = "at_done",
        placed_at_text: str = "as_sent",
    ) -> None:
        if not sites:
            raise ValueError("at least one site is needed")
        if order_list_order not in ORDER_LIST_ORDERS:
            raise ValueError(f"order_list_order must be one of {', '.join(ORDER_LIST_ORDERS)}")
        if duplicate_order_ids not in DUPLICATE_ORDER_IDS:
            raise ValueError(f"duplicate_order_ids must be one of {', '.join(DUPLICATE_ORDER_IDS)}")
        if pick_moves not in PICK_MOVES:
            raise ValueError(f"pick_moves must be one of {', '.join(PICK_MOVES)}")
        if placed_at_text not in PLACED_AT_TEXTS:
            raise ValueError(f"placed_at_text must be one of {', '.join(PLACED_AT_TEXTS)}")
        self.placed_at_text = placed_at_text
        self.duplicate_order_ids = duplicate_order_ids
        self.pick_moves = pick_moves
        self.clock = clock
        self.order_attributes = None if order_attributes is None else frozenset(order_attributes)
        # The document does not say in which order GET orders lists them (see ORDER_LIST_ORDERS);
        # tests switch this to check that the client does not depend on one.
        self.order_list_order = order_list_order
        self.site_id = sites[0]
        self.state = InstockState(org_id, [(s, i == 0) for i, s in enumerate(sites)])
        self.server = SandboxServer(
            host,
            port,
            seed=seed,
            token=token,
            authenticate=self._authenticate,
            correlation_headers=("Instock-Correlation-ID",),
            request_id_headers=("Instock-Request-ID", "Instock-Response-ID"),
            retry_after=retry_after,
            slow_seconds=slow_seconds,
            name="instock",
        )
        self._register_routes()
        _generate(self.state, random.Random(seed), articles, self.site_id, int(clock()))

    # lifecycle and passthroughs

    @property
    def url(self) -> str:
        """Server root, e.g. ``http://127.0.0.1:PORT``."""
        return self.server.url

    @property
    def base_url(self) -> str:
        """The API base a client is configured with (production: https://api.instock.com/v1)."""
        return f"{self.server.url}/v1"

    # Python-side levers (the warehouse floor, for tests and the demo)

    def advance_order(self, order_id: str, to_cell_id: str | None = None) -> str:
        """One step of fulfilment, as the debug endpoint; returns the new status."""
        with self.state.lock:
            order = self.state.orders.get(order_id)
            if order is None:
                raise KeyError(order_id)
            return self._advance(order, to_cell_id)

    def cancel_order(self, order_id: str) -> None:
        """Cancel a registered or reserved order (the floor can cancel mid-fulfilment)."""
        with self.state.lock:
            order = self.state.orders[order_id]
            if order.status == "registered":
                self._cancel_registered(order)
            elif order.status == "reserved" and order.picked:
                raise ValueError(f"order {order_id} is picked (pick_moves='before_done')")
            elif order.status == "reserved":
                now = self.clock()
                for line in order.lines:
                    stock = self.state.stock(order.site_id, line.article_id)
                    held = order.reserved.get(line.line_id, 0)
                    stock.reserved -= held
                    stock.free += held
                    self.state.touched(order.site_id, line.article_id)
                for ordertask_id in order.ordertask_ids:
                    self.state.ordertasks[ordertask_id].status = "canceled"
                order.status = "canceled"
                order.status_changed_at = now
            else:
                raise ValueError(f"order {order_id} is already {order.status}")

    def receive(self, lines: Sequence[tuple[str, int]], order_id: str | None = None) -> str:
        """A reception order registered on the floor (goods announced, not yet decanted)."""
        with self.state.lock:
            if order_id is None:
                order_id = f"RCV-L{sum(o.kind == 'reception' for o in self.state.orders.values())}"
            order_lines = [Line(f"{order_id}-{n}", a, q) for n, (a, q) in enumerate(lines, start=1)]
            self._require_articles(order_lines)
            order = Order(
                order_id, self.site_id, "reception", self._now(), {}, order_lines, "registered"
            )
            order.status_changed_at = self.clock()
            self.state.add_order(order)
            return order_id

    def decant(self, order_id: str, attributes: dict[str, str] | None = None) -> None:
        """Decant a reception order: an associate may add attributes (e.g. the ASN) at the
        workstation, as the document's reception example shows; the goods go to stock with
        one done ordertask and a move per line; the order is done."""
        with self.state.lock:
            order = self.state.orders[order_id]
            if order.kind != "reception" or order.status in TERMINAL:
                raise ValueError(f"order {order_id} is not an open reception order")
            order.attributes = {**order.attributes, **(attributes or {})}
            ts = int(self.clock())
            done_ordertask(
                self.state, order, [storage_cell(line.article_id) for line in order.lines]
            )
            for line in order.lines:
                self.state.stock(order.site_id, line.article_id).free += line.qty
                self.state.touched(order.site_id, line.article_id)
                self.state.add_move(
                    order.site_id,
                    line.article_id,
                    line.qty,
                    ts,
                    user_id="operator-01",
                    order_id=order_id,
                    from_cell_id="DECANT-01",
                    to_cell_id=storage_cell(line.article_id),
                    from_account_id="reception",
                    to_account_id="stock",
                )
            order.status = "done"
            order.status_changed_at = ts
            self.state.order_changed(order_id)

    def adjust_inventory(self, article_id: str, qty: int, site_id: str | None = None) -> None:
        """As the debug endpoint: ``qty`` is added to free stock, 0 empties it."""
        with self.state.lock:
            self._adjust(site_id or self.site_id, [(article_id, qty)])

    def stock(self, article_id: str, site_id: str | None = None) -> Stock:
        """A copy of an article's inventory."""
        with self.state.lock:
            found = self.state.inventory[site_id or self.site_id].get(article_id) or Stock()
            return Stock(found.free, found.reserved, found.registered)

    def fulfilled(self, order_id: str) -> dict[str, int]:
        """Fulfilled quantity per line_id, by the rule in the module docstring."""
        with self.state.lock:
            order = self.state.orders[order_id]
            totals = {line.line_id: 0 for line in order.lines}
            for ordertask_id in order.ordertask_ids:
                task = self.state.ordertasks[ordertask_id]
                if task.status != "done":
                    continue
                for line in task.lines:
                    totals[line["line_id"]] += sum(c["qty"] for c in line["to_cells"])
            return totals

    def override_record(self, kind: str, key: str, raw: str | Any) -> None:
        """Answer `raw` instead of one real record, for tests of hostile answers.

        ``kind`` is ``inventory`` (the list's record of article ``key``, listed even when
        its stock is zero), ``order`` (order ``key`` in the orders list and its retrieval),
        ``order_status`` or ``ordertask``. A str is sent as is, so it can hold what Python
        would not write: ``1e400``, ``99999999999999999999``, ``NaN``; anything else is
        encoded as JSON.
        """
        if kind not in ("inventory", "order", "order_status", "ordertask"):
            raise ValueError(f"unknown record kind {kind!r}")
        body = raw.encode() if isinstance(raw, str) else dumps(raw)
        with self.state.lock:
            self.state.overrides[(kind, key)] = body

    def clear_overrides(self) -> None:
        with self.state.lock:
            self.state.overrides.clear()

    def add_raw_move(self, raw: str | Any, ts: float, article_id: str = "raw") -> None:
        """A move listed as ``raw`` (a str is sent as is) at Unix time ``ts``, for tests."""
        body = raw.encode() if isinstance(raw, str) else dumps(raw)
        with self.state.lock:
            move = self.state.add_move(
                self.site_id,
                article_id,
                0,
                int(ts),
                user_id="",
                order_id=None,
                from_cell_id="",
                to_cell_id="",
                from_account_id="",
                to_account_id="",
            )
            move._raw = body

    def moves_for_order(self, order_id: str) -> list[Move]:
        with self.state.lock:
            site_id = self.state.orders[order_id].site_id
            return [m for m in self.state.moves[site_id] if m.order_id == order_id]

    # auth and helpers

    def _authenticate(self, request: Request) -> bool:
        header = request.header("authorization") or ""
        scheme, _, presented = header.partition(" ")
        token = self.server.token
        if scheme.lower() != "bearer" or not presented or token is None:
            return False
        return hmac.compare_digest(presented.strip().encode(), token.encode())

    def _site(self, request: Request) -> str:
        site_id = request.params["site_id"]
        if site_id not in self.state.sites:
            raise _not_found("site_id", site_id)
        return site_id

    def _virtual_site(self, request: Request) -> str:
        site_id = self._site(request)
        if not self.state.sites[site_id]:
            raise ApiError(
                403, "forbidden", "Debug endpoints are available for virtual sites only."
            )
        return site_id

    def _order(self, request: Request, site_id: str) -> Order:
        order_id = request.params["order_id"]
        order = self.state.orders.get(order_id)
        if order is None or order.site_id != site_id:
            raise _not_found("order_id", order_id)
        return order

    def _now(self) -> str:
        return rfc3339(self.clock())

    def _register_routes(self) -> None:
        add = self.server.add_route
        add("GET", "/v1/sites", self._get_sites)
        add("POST", "/v1/articles", self._upload_articles)
        add("GET", "/v1/articles", self._list_articles)
        add("GET", "/v1/articles/{article_id}", self._get_article)
        add("PUT", "/v1/articles/{article_id}", self._update_article)
        add("POST", "/v1/{site_id}/orders", self._create_order)
        add("GET", "/v1/{site_id}/orders", self._list_orders)
        add("GET", "/v1/{site_id}/orders/{order_id}", self._get_order)
        add("PUT", "/v1/{site_id}/orders/{order_id}", self._update_order)
        add("GET", "/v1/{site_id}/orders/{order_id}/status", self._get_status)
        add("POST", "/v1/{site_id}/orders/{order_id}/status", self._advance_status)
        add("DELETE", "/v1/{site_id}/orders/{order_id}/status", self._cancel_status)
        add("GET", "/v1/{site_id}/ordertasks/{ordertask_id}", self._get_ordertask)
        add("GET", "/v1/{site_id}/inventory", self._list_inventory)
        add("POST", "/v1/{site_id}/inventory", self._inventory_many)
        add("PUT", "/v1/{site_id}/inventory", self._adjust_inventory)
        add("GET", "/v1/{site_id}/inventory/{article_id}", self._inventory_one)
        add("GET", "/v1/{site_id}/moves", self._list_moves)
        add("GET", "/v1/{site_id}/moves/{article_id}", self._list_article_moves)

    # sites and articles

    def _get_sites(self, request: Request) -> Response:
        sites = [{"site_id": s, "is_virtual": v} for s, v in self.state.sites.items()]
        return Response.of_json({"sites": sites})

    def _upload_articles(self, request: Request) -> Response:
        body = request.json
        if not isinstance(body, dict) or not isinstance(body.get("articles"), list):
            raise _bad("Request body must be an object with an 'articles' list.")
        batch: list[Any] = body["articles"]
        if not batch:
            raise _bad("articles must not be empty.")
        if len(batch) > BULK_MAX:
            raise _bad(f"Bulk article upload is limited to {BULK_MAX} articles, got {len(batch)}.")
        problems: list[str] = []
        accepted: list[dict[str, Any]] = []
        seen: set[str] = set()
        with self.state.lock:
            for index, raw in enumerate(batch):
                article, reason = validate_article(raw, complete=False)
                label = raw.get("article_id") if isinstance(raw, dict) else None
                if article is not None:
                    if article["article_id"] in self.state.articles:
                        reason = "article_id already exists"
                    elif article["article_id"] in seen:
                        reason = "article_id is repeated in the batch"
                    else:
                        seen.add(article["article_id"])
                        accepted.append(article)
                        continue
                problems.append(f"article {label!r} (index {index}): {reason}")
            if problems:
                shown = "; ".join(problems[:10])
                more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
                raise ApiError(
                    400,
                    "resource_cannot_be_created",
                    f"Validation failed for one or more articles: {shown}{more}.",
                )
            for article in accepted:
                self.state.put_article(article)
        return Response(200, _OK_BODY)

    def _list_articles(self, request: Request) -> Response:
        size = page_size(request.query)
        with self.state.lock:
            ids = self.state.article_ids
            start = 0
            cursor = request.query.get("start_cursor")
            if cursor:
                start = bisect_right(ids, _string_cursor(cursor, "a", ""))
            chunk = ids[start : start + size]
            has_more = start + size < len(ids)
            next_cursor = encode_cursor("a", "", chunk[-1]) if has_more else ""
            items = [self.state.article_raw(a) for a in chunk]
        return Response(200, render_page(_page_meta(has_more, next_cursor), "articles", items))

    def _get_article(self, request: Request) -> Response:
        article_id = request.params["article_id"]
        with self.state.lock:
            if article_id not in self.state.articles:
                raise _not_found("article_id", article_id)
            return Response(200, self.state.article_raw(article_id))

    def _update_article(self, request: Request) -> Response:
        article_id = request.params["article_id"]
        body = request.json
        if isinstance(body, dict) and "article_id" not in body:
            body = {**body, "article_id": article_id}
        article, reason = validate_article(body, complete=True)
        with self.state.lock:
            current = self.state.articles.get(article_id)
            if current is None:
                raise _not_found("article_id", article_id)
            if article is None:
                serial = isinstance(body, dict) and body.get("is_serial_numbered") is True
                code = "resource_cannot_be_updated" if serial else "bad_request"
                raise ApiError(400, code, f"Article {article_id} cannot be updated: {reason}.")
            if article["article_id"] != article_id:
                raise _bad("article_id in the body does not match the path.")
            if current.get("is_serial_numbered"):
                raise ApiError(
                    400, "resource_cannot_be_updated", "Serial-numbered articles cannot be updated."
                )
            if self.state.has_moves(article_id):
                raise ApiError(
                    400,
                    "resource_cannot_be_updated",
                    f"Article {article_id} cannot be updated as it already has moves.",
                )
            self.state.put_article(article)
        return Response(200, _OK_BODY)

    # orders

    def _placed_at_kept(self, order: Order) -> Order:
        """`placed_at` as this simulator keeps it (see PLACED_AT_TEXTS)."""
        if self.placed_at_text == "normalized":
            order.placed_at = rfc3339(parse_rfc3339(order.placed_at))
        return order

    def _create_order(self, request: Request) -> Response:
        site_id = self._site(request)
        order = self._placed_at_kept(_parse_order_body(request.json, site_id, self.clock()))
        _check_order_attribute_names(order.attributes, self.order_attributes)
        with self.state.lock:
            duplicate = order.order_id in self.state.orders
            if duplicate and self.duplicate_order_ids == "refuse":
                raise ApiError(400, "resource_cannot_be_created", "order_id already exists.")
            self._require_articles(order.lines)
            if duplicate:  # the "accept" reading: a second order under the same id
                order.status_changed_at = self.clock()
                self.state.duplicate_orders.append(order)
                self._register_demand(order, +1)
                return Response(200, _OK_BODY)
            order.status_changed_at = self.clock()
            self.state.add_order(order)
            self._register_demand(order, +1)
        return Response(200, _OK_BODY)

    def _require_articles(self, lines: Iterable[Line]) -> None:
        for line in lines:
            if line.article_id not in self.state.articles:
                raise _not_found("article_id", line.article_id)

    def _register_demand(self, order: Order, sign: int) -> None:
        for line in order.lines:
            self.state.stock(order.site_id, line.article_id).registered += sign * line.qty
            self.state.touched(order.site_id, line.article_id)

    def _list_orders(self, request: Request) -> Response:
        if self.order_list_order != "created":
            return self._list_orders_keyed(request)
        site_id = self._site(request)
        size = page_size(request.query)
        with self.state.lock:
            ids = self.state.site_orders[site_id]
            start = 0
            cursor = request.query.get("start_cursor")
            if cursor:
                parts = decode_cursor(cursor, "o", site_id)
                if len(parts) != 1 or type(parts[0]) is not int:
                    raise _bad("start_cursor is not valid.")
                start = parts[0] + 1
            chunk = ids[start : start + size]
            has_more = start + size < len(ids)
            next_cursor = encode_cursor("o", site_id, start + len(chunk) - 1) if has_more else ""
            overrides = self.state.overrides
            items = [overrides.get(("order", o)) or self.state.order_raw(o) for o in chunk]
        meta = _page_meta(has_more, next_cursor)
        meta |= {"org_id": self.state.org_id, "site_id": site_id}
        return Response(200, render_page(meta, "orders", items))

    def _list_orders_keyed(self, request: Request) -> Response:
        """The orders list in ``newest_first`` or ``random`` order, with keyset cursors: an
        order created later can land before a cursor a client holds."""
        site_id = self._site(request)
        size = page_size(request.query)
        with self.state.lock:
            created = self.state.site_orders[site_id]
            if self.order_list_order == "newest_first":
                keyed = [(f"{len(created) - i:012d}", o) for i, o in enumerate(created)]
            else:
                keyed = [(hashlib.sha1(o.encode()).hexdigest(), o) for o in created]  # noqa: S324
            keyed.sort()
            keys = [k for k, _ in keyed]
            start = 0
            cursor = request.query.get("start_cursor")
            if cursor:
                start = bisect_right(keys, _string_cursor(cursor, "ok", site_id))
            chunk = keyed[start : start + size]
            has_more = start + size < len(keyed)
            next_cursor = encode_cursor("ok", site_id, chunk[-1][0]) if has_more else ""
            overrides = self.state.overrides
            items = [overrides.get(("order", o)) or self.state.order_raw(o) for _, o in chunk]
        meta = _page_meta(has_more, next_cursor)
        meta |= {"org_id": self.state.org_id, "site_id": site_id}
        return Response(200, render_page(meta, "orders", items))

    def _get_order(self, request: Request) -> Response:
        site_id = self._site(request)
        with self.state.lock:
            order = self._order(request, site_id)
            if raw := self.state.overrides.get(("order", order.order_id)):
                return Response(200, raw)
            return Response.of_json(order.as_json(self.state.org_id))

    def _update_order(self, request: Request) -> Response:
        site_id = self._site(request)
        with self.state.lock:
            order = self._order(request, site_id)
            body = request.json
            if not isinstance(body, dict):
                raise _bad("Request body must be a JSON object.")
            if body.get("order_id", order.order_id) != order.order_id:
                raise _bad("order_id in the body does not match the path.")
            if order.kind != "customer":
                raise ApiError(
                    400, "resource_cannot_be_updated", "Only customer order can be updated via API."
                )
            if order.status != "registered":
                raise ApiError(
                    400,
                    "resource_cannot_be_updated",
                    f"Customer order is already being fulfilled or fulfilled ({order.status}).",
                )
            # "when updating an order, all parameters must be passed"
            missing = [f for f in ORDER_FIELDS if f not in body]
            if missing:
                raise _bad(f"A complete order record is required, missing {', '.join(missing)}.")
            if body["org_id"] != self.state.org_id:
                raise _bad("org_id in the body does not match the organization.")
            new = self._placed_at_kept(_parse_order_body(body, site_id, self.clock()))
            _check_order_attribute_names(new.attributes, self.order_attributes)
            self._require_articles(new.lines)
            self._register_demand(order, -1)
            order.placed_at, order.attributes, order.lines = (
                new.placed_at,
                new.attributes,
                new.lines,
            )
            self._register_demand(order, +1)
            self.state.order_changed(order.order_id)
        return Response(200, _OK_BODY)

    def _get_status(self, request: Request) -> Response:
        site_id = self._site(request)
        with self.state.lock:
            order = self._order(request, site_id)
            if raw := self.state.overrides.get(("order_status", order.order_id)):
                return Response(200, raw)
            inventory = self.state.inventory[site_id]
            lines = []
            for line in order.lines:
                stock = inventory.get(line.article_id) or Stock()
                qty = {
                    "requested": line.qty,
                    "reserved": order.reserved.get(line.line_id, 0),
                    "free": stock.free,
                }
                lines.append({"line_id": line.line_id, "article_id": line.article_id, "qty": qty})
            data = {
                "org_id": self.state.org_id,
                "site_id": site_id,
                "order_id": order.order_id,
                "order_status": order.status,
                "timestamp": self._now(),
                "ordertask_ids": list(order.ordertask_ids or NO_ORDERTASKS),
                "lines": lines,
            }
        return Response.of_json(data)

    def _advance_status(self, request: Request) -> Response:
        site_id = self._virtual_site(request)
        body = request.json
        if not isinstance(body, dict):
            raise _bad("A JSON object body is required ({} when no to_cell_id is given).")
        to_cell_id = body.get("to_cell_id")
        if to_cell_id is not None and (
            not isinstance(to_cell_id, str) or not 1 <= len(to_cell_id) <= 1024
        ):
            raise _bad("to_cell_id must be a string of 1..1024 characters.")
        with self.state.lock:
            order = self._order(request, site_id)
            if order.status in TERMINAL:
                raise ApiError(
                    400,
                    "resource_cannot_be_updated",
                    f"couldn't update order status (current {order.status}).",
                )
            self._advance(order, to_cell_id)
        return Response(201, _EMPTY_BODY)

    def _cancel_status(self, request: Request) -> Response:
        site_id = self._site(request)
        with self.state.lock:
            order = self._order(request, site_id)
            if order.status != "registered":
                raise ApiError(
                    400,
                    "resource_cannot_be_updated",
                    f"couldn't update order status (current {order.status}, pending canceled).",
                )
            self._cancel_registered(order)
        return Response(200, _EMPTY_BODY)

    def _cancel_registered(self, order: Order) -> None:
        self._register_demand(order, -1)
        order.status = "canceled"
        order.status_changed_at = self.clock()

    def _advance(self, order: Order, to_cell_id: str | None) -> str:
        """registered -> reserved (or canceled when short) -> done; under
        ``pick_moves="before_done"`` reserved -> reserved and picked -> done. Caller holds
        the lock."""
        now = self.clock()
        state = self.state
        if order.status == "registered":
            needed: dict[str, int] = {}
            for line in order.lines:
                needed[line.article_id] = needed.get(line.article_id, 0) + line.qty
            short = any(
                state.stock(order.site_id, article_id).free < qty
                for article_id, qty in needed.items()
            )
            self._register_demand(order, -1)
            if short:
                order.status = "canceled"
            else:
                for line in order.lines:
                    stock = state.stock(order.site_id, line.article_id)
                    stock.free -= line.qty
                    stock.reserved += line.qty
                    order.reserved[line.line_id] = line.qty
                    state.touched(order.site_id, line.article_id)
                self._plan_ordertasks(order, to_cell_id)
                order.status = "reserved"
        elif order.status == "reserved" and order.picked:
            order.status = "done"  # pick_moves="before_done": picked on an earlier step
        elif order.status == "reserved":
            self._pick(order, int(now))
            if self.pick_moves == "at_done":
                order.status = "done"
        else:
            raise ValueError(f"order {order.order_id} is already {order.status}")
        order.status_changed_at = now
        return order.status

    def _pick(self, order: Order, ts: int) -> None:
        """The robots pick a reserved order: a move per ``to_cells`` entry carrying its
        order_id, every ordertask done, the reservation consumed. Caller holds the lock."""
        state = self.state
        for ordertask_id in order.ordertask_ids:
            task = state.ordertasks[ordertask_id]
            for line in task.lines:
                for cell in line["to_cells"]:
                    state.add_move(
                        order.site_id,
                        line["article_id"],
                        cell["qty"],
                        ts,
                        user_id="robot-01",
                        order_id=order.order_id,
                        from_cell_id=storage_cell(line["article_id"]),
                        to_cell_id=cell["to_cell_id"],
                        from_account_id="stock",
                        to_account_id="customer",
                    )
            task.status = "done"
        for line in order.lines:
            stock = state.stock(order.site_id, line.article_id)
            stock.reserved -= order.reserved.get(line.line_id, 0)
            state.touched(order.site_id, line.article_id)
        order.picked = True

    def _plan_ordertasks(self, order: Order, to_cell_id: str | None) -> None:
        """Two lines per ordertask; odd lines of qty >= 2 split over two port cells."""
        for start in range(0, len(order.lines), 2):
            task_lines = []
            for offset, line in enumerate(order.lines[start : start + 2]):
                if to_cell_id is not None:
                    cells = [{"to_cell_id": to_cell_id, "qty": line.qty}]
                elif offset == 1 and line.qty >= 2:
                    first = line.qty // 2
                    cells = [
                        {"to_cell_id": "PORT-01", "qty": first},
                        {"to_cell_id": "PORT-02", "qty": line.qty - first},
                    ]
                else:
                    cells = [{"to_cell_id": "PORT-01", "qty": line.qty}]
                task_lines.append(
                    {"line_id": line.line_id, "article_id": line.article_id, "to_cells": cells}
                )
            task = OrderTask(
                self.state.next_ordertask_id(),
                order.order_id,
                order.site_id,
                "reserved",
                task_lines,
            )
            self.state.ordertasks[task.ordertask_id] = task
            order.ordertask_ids.append(task.ordertask_id)

    def _get_ordertask(self, request: Request) -> Response:
        site_id = self._site(request)
        ordertask_id = request.params["ordertask_id"]
        with self.state.lock:
            task = self.state.ordertasks.get(ordertask_id)
            if task is None or task.site_id != site_id:
                raise _not_found("ordertask_id", ordertask_id)
            if raw := self.state.overrides.get(("ordertask", ordertask_id)):
                return Response(200, raw)
            return Response.of_json(task.as_json(self.state.org_id))

    # inventory

    def _list_inventory(self, request: Request) -> Response:
        site_id = self._site(request)
        size = page_size(request.query)
        with self.state.lock:
            ids = self.state.article_ids
            inventory = self.state.inventory[site_id]
            start = 0
            cursor = request.query.get("start_cursor")
            if cursor:
                start = bisect_right(ids, _string_cursor(cursor, "i", site_id))
            overrides = self.state.overrides
            picked: list[str] = []
            has_more = False
            for index in range(start, len(ids)):
                stock = inventory.get(ids[index])
                if (stock is None or stock.is_zero()) and (
                    "inventory",
                    ids[index],
                ) not in overrides:
                    continue  # the document: all-zero rows are omitted from the list
                if len(picked) == size:
                    has_more = True
                    break
                picked.append(ids[index])
            next_cursor = encode_cursor("i", site_id, picked[-1]) if has_more else ""
            items = [
                overrides.get(("inventory", a)) or self.state.stock_raw(site_id, a) for a in picked
            ]
        meta = _page_meta(has_more, next_cursor)
        meta |= {"org_id": self.state.org_id, "site_id": site_id, "timestamp": self._now()}
        return Response(200, render_page(meta, "articles", items))

    def _inventory_many(self, request: Request) -> Response:
        site_id = self._site(request)
        body = request.json
        if not isinstance(body, dict) or not isinstance(body.get("article_ids"), list):
            raise _bad("Request body must be an object with an 'article_ids' list.")
        article_ids: list[Any] = body["article_ids"]
        if len(article_ids) > BULK_MAX:
            raise _bad(f"article_ids is limited to {BULK_MAX} items.")
        with self.state.lock:
            for article_id in article_ids:
                if not isinstance(article_id, str) or article_id not in self.state.articles:
                    raise _not_found("article_id", str(article_id))
            items = [self.state.stock_raw(site_id, a) for a in article_ids]
        meta = {"org_id": self.state.org_id, "site_id": site_id, "timestamp": self._now()}
        return Response(200, render_page(meta, "articles", items))

    def _inventory_one(self, request: Request) -> Response:
        site_id = self._site(request)
        article_id = request.params["article_id"]
        with self.state.lock:
            if article_id not in self.state.articles:
                raise _not_found("article_id", article_id)
            stock = self.state.inventory[site_id].get(article_id) or Stock()
            data = {
                "org_id": self.state.org_id,
                "site_id": site_id,
                "timestamp": self._now(),
                "article_id": article_id,
                "qty": stock.as_json(),
            }
        return Response.of_json(data)

    def _adjust_inventory(self, request: Request) -> Response:
        site_id = self._virtual_site(request)
        body = request.json
        if not isinstance(body, dict) or not isinstance(body.get("adjustments"), list):
            raise _bad("Request body must be an object with an 'adjustments' list.")
        adjustments: list[tuple[str, int]] = []
        for index, raw in enumerate(body["adjustments"]):
            article_id = raw.get("article_id") if isinstance(raw, dict) else None
            qty = raw.get("qty") if isinstance(raw, dict) else None
            if not isinstance(article_id, str):
                raise _bad(f"adjustments[{index}].article_id is required.")
            if isinstance(qty, bool) or not isinstance(qty, int):
                raise _bad(f"adjustments[{index}].qty must be an integer.")
            adjustments.append((article_id, qty))
        if not adjustments:
            raise _bad("adjustments must not be empty.")
        with self.state.lock:
            self._adjust(site_id, adjustments)
        return Response(200, _EMPTY_BODY)

    def _adjust(self, site_id: str, adjustments: Sequence[tuple[str, int]]) -> None:
        """Validate all, then apply all: one adjustment order (done, with one done ordertask)
        for the request, and one move per net change carrying its order_id."""
        deltas: dict[str, int] = {}
        for article_id, qty in adjustments:
            if article_id not in self.state.articles:
                raise _not_found("article_id", article_id)
            free = self.state.stock(site_id, article_id).free + deltas.get(article_id, 0)
            delta = -free if qty == 0 else qty
            if free + delta < 0:
                raise _bad(f"Adjustment would make free stock of {article_id} negative.")
            deltas[article_id] = deltas.get(article_id, 0) + delta
        ts = int(self.clock())
        changes = [(a, d) for a, d in deltas.items() if d != 0]
        if not changes:
            return
        order = adjustment_order(self.state, site_id, changes, ts)
        self.state.add_order(order)
        for article_id, delta in changes:
            stock = self.state.stock(site_id, article_id)
            stock.free += delta
            self.state.touched(site_id, article_id)
            self.state.add_move(
                site_id, article_id, abs(delta), ts, **adjustment_move(article_id, delta, order)
            )

    # moves

    def _list_moves(self, request: Request) -> Response:
        return self._moves_page(request, None)

    def _list_article_moves(self, request: Request) -> Response:
        article_id = request.params["article_id"]
        with self.state.lock:
            if article_id not in self.state.articles:
                raise _not_found("article_id", article_id)
        return self._moves_page(request, article_id)

    def _moves_page(self, request: Request, article_id: str | None) -> Response:
        site_id = self._site(request)
        size = page_size(request.query)
        raw_from = request.query.get("from_timestamp")
        raw_to = request.query.get("to_timestamp")
        if not raw_from or not raw_to:
            raise _bad("from_timestamp and to_timestamp are both required.")
        try:
            from_ts, to_ts = parse_rfc3339(raw_from), parse_rfc3339(raw_to)
        except ValueError as exc:
            raise _bad("from_timestamp and to_timestamp must be RFC 3339 with an offset.") from exc
        if from_ts > to_ts:
            raise _bad("from_timestamp must not be after to_timestamp.")
        to_cell = request.query.get("to_cell_id") if article_id is None else None
        scope = f"{site_id}/{article_id or ''}"
        with self.state.lock:
            moves, keys = self.state.move_index(site_id, article_id)
            lo = bisect_left(keys, (math.ceil(from_ts), -1))
            hi = bisect_right(keys, (math.floor(to_ts), sys.maxsize))
            cursor = request.query.get("start_cursor")
            if cursor:
                parts = decode_cursor(cursor, "m", scope)
                if len(parts) != 2 or not all(type(p) is int for p in parts):
                    raise _bad("start_cursor is not valid.")
                hi = min(hi, bisect_left(keys, (parts[0], parts[1])))
            picked: list[Move] = []
            has_more = False
            for index in range(hi - 1, lo - 1, -1):  # newest first
                move = moves[index]
                if to_cell is not None and move.to_cell_id != to_cell:
                    continue
                if len(picked) == size:
                    has_more = True
                    break
                picked.append(move)
            next_cursor = encode_cursor("m", scope, *picked[-1].key) if has_more else ""
            items = [m.encoded() for m in picked]
        meta = _page_meta(has_more, next_cursor)
        meta |= {"org_id": self.state.org_id, "site_id": site_id}
        if article_id is not None:
            meta["article_id"] = article_id
        return Response(200, render_page(meta, "moves", items))


def storage_cell(article_id: str) -> str:
    """A stable storage cell per article, so moves of one article share a from/to cell."""
    return f"S{sum(article_id.encode()) * 7919 % 9000 + 1000:04d}"


def done_ordertask(state: InstockState, order: Order, cells: Sequence[str]) -> OrderTask:
    """One done ordertask for all lines of ``order`` (line i goes to ``cells[i]``)."""
    lines = [
        {
            "line_id": line.line_id,
            "article_id": line.article_id,
            "to_cells": [{"to_cell_id": cell, "qty": line.qty}],
        }
        for line, cell in zip(order.lines, cells, strict=True)
    ]
    task = OrderTask(state.next_ordertask_id(), order.order_id, order.site_id, "done", lines)
    state.ordertasks[task.ordertask_id] = task
    order.ordertask_ids.append(task.ordertask_id)
    return task


def adjustment_order(
    state: InstockState, site_id: str, changes: Sequence[tuple[str, int]], ts: int
) -> Order:
    """An adjustment order (done at once, with its done ordertask) for net stock changes."""
    state.adjustment_seq += 1
    order_id = f"ADJ{state.adjustment_seq:06d}"
    lines = [Line(f"{order_id}-{n}", a, abs(d)) for n, (a, d) in enumerate(changes, start=1)]
    order = Order(order_id, site_id, "adjustment", rfc3339(ts), {}, lines, "done")
    order.status_changed_at = ts
    cells = [storage_cell(a) if d > 0 else "ADJUSTMENT" for a, d in changes]
    done_ordertask(state, order, cells)
    return order


def adjustment_move(article_id: str, delta: int, order: Order) -> dict[str, Any]:
    """The fields of an adjustment's move (in when ``delta`` > 0, out otherwise)."""
    cell = storage_cell(article_id)
    inbound = delta > 0
    return {
        "user_id": "debug",
        "order_id": order.order_id,
        "from_cell_id": "ADJUSTMENT" if inbound else cell,
        "to_cell_id": cell if inbound else "ADJUSTMENT",
        "from_account_id": "adjustment" if inbound else "stock",
        "to_account_id": "stock" if inbound else "adjustment",
    }


# --- seed data -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Seed:
    """Working data of the generator; moves are collected, then sorted and numbered once."""

    state: InstockState
    rng: random.Random
    site_id: str
    now: int
    final_free: dict[str, int] = field(default_factory=dict)  # decanted articles only
    emptied: set[str] = field(default_factory=set)
    picked: dict[str, int] = field(default_factory=dict)
    moves: list[dict[str, Any]] = field(default_factory=list)
    orders: list[tuple[int, Order]] = field(default_factory=list)

    def move(self, article_id: str, qty: int, ts: int, **fields: Any) -> None:
        self.moves.append({"article_id": article_id, "qty": qty, "ts": ts, **fields})


_DAY: Final = 86_400


def _generate(state: InstockState, rng: random.Random, count: int, site_id: str, now: int) -> None:
    """Articles, stock, reception and customer history and their moves; fast for 20k+."""
    seed = _Seed(state, rng, site_id, now)
    _seed_articles(seed, count)
    _seed_customer_history(seed)
    _seed_decanting(seed)
    for _, order in sorted(seed.orders, key=lambda pair: pair[0]):
        state.add_order(order)
    for move in sorted(seed.moves, key=lambda m: m["ts"]):
        state.add_move(site_id, move.pop("article_id"), move.pop("qty"), move.pop("ts"), **move)


def _seed_articles(seed: _Seed, count: int) -> None:
    rng = seed.rng
    ids: set[str] = set()
    for _ in range(count):
        article_id = str(rng.randrange(10**11, 10**13))
        while article_id in ids:
            article_id = str(rng.randrange(10**11, 10**13))
        ids.add(article_id)
        seed.state.put_article(
            {
                "article_id": article_id,
                "name": f"{rng.choice(_WORDS_A)} {rng.choice(_WORDS_B)} {rng.randint(1, 48)} Oz",
                "is_serial_numbered": rng.random() < 0.02,
                "dimensions": {
                    "x": f"{rng.uniform(1, 20):.2f}",
                    "y": f"{rng.uniform(1, 20):.2f}",
                    "z": f"{rng.uniform(1, 20):.2f}",
                    "uom": "in",
                },
                "attributes": {
                    "product_category_name": rng.choice(_CATEGORIES),
                    "temp_zone": "ambient",
                },
            }
        )
        profile = rng.random()
        if profile < 0.10:
            continue  # never decanted: all-zero inventory, no moves, still updatable
        if profile < 0.15:
            seed.emptied.add(article_id)
            seed.final_free[article_id] = 0
        else:
            seed.final_free[article_id] = rng.randint(1, 500)


def _seed_customer_history(seed: _Seed) -> None:
    """Done customer orders over the last 20 days, with done ordertasks and pick moves."""
    rng, state, site_id = seed.rng, seed.state, seed.site_id
    stocked = [a for a, free in seed.final_free.items() if free > 0]
    for number in range(len(stocked) // 20):
        placed = seed.now - rng.randint(_DAY, 20 * _DAY)
        chosen = rng.sample(stocked, k=min(len(stocked), rng.randint(1, 3)))
        order_id = f"H{number + 1:07d}"
        lines = [Line(f"{order_id}-{i + 1}", a, rng.randint(1, 5)) for i, a in enumerate(chosen)]
        order = Order(order_id, site_id, "customer", rfc3339(placed), {}, lines, "done")
        order.reserved = {line.line_id: line.qty for line in lines}
        order.status_changed_at = placed + 3600
        task_lines = []
        for line in lines:
            seed.picked[line.article_id] = seed.picked.get(line.article_id, 0) + line.qty
            cells = [{"to_cell_id": "PORT-01", "qty": line.qty}]
            task_lines.append(
                {"line_id": line.line_id, "article_id": line.article_id, "to_cells": cells}
            )
            seed.move(
                line.article_id,
                line.qty,
                placed + 3600,
                user_id="robot-01",
                order_id=order_id,
                from_cell_id=storage_cell(line.article_id),
                to_cell_id="PORT-01",
                from_account_id="stock",
                to_account_id="customer",
            )
        task = OrderTask(state.next_ordertask_id(), order_id, site_id, "done", task_lines)
        state.ordertasks[task.ordertask_id] = task
        order.ordertask_ids.append(task.ordertask_id)
        seed.orders.append((placed, order))


def _seed_decanting(seed: _Seed) -> None:
    """Receive what is in stock plus what was picked through reception orders of up to 200
    lines (each with one done ordertask); emptied articles are adjusted back out through an
    adjustment order each. Every move carries its order_id."""
    rng, now = seed.rng, seed.now
    reception: Order | None = None
    receptions: list[Order] = []
    for article_id, final_free in seed.final_free.items():
        received = final_free + seed.picked.get(article_id, 0)
        if article_id in seed.emptied:
            received = rng.randint(1, 20)
        if reception is None or len(reception.lines) >= 200:
            reception_id = f"RCV{len(receptions) + 1:06d}"
            placed = now - 31 * _DAY
            reception = Order(
                reception_id, seed.site_id, "reception", rfc3339(placed), {}, [], "done"
            )
            reception.status_changed_at = now - 30 * _DAY
            receptions.append(reception)
            seed.orders.append((placed + len(seed.orders), reception))
        order_id = reception.order_id
        line_id = f"{order_id}-{len(reception.lines) + 1}"
        reception.lines.append(Line(line_id, article_id, received))
        cell = storage_cell(article_id)
        seed.move(
            article_id,
            received,
            now - rng.randint(21 * _DAY, 30 * _DAY),
            user_id="operator-01",
            order_id=order_id,
            from_cell_id="DECANT-01",
            to_cell_id=cell,
            from_account_id="reception",
            to_account_id="stock",
        )
        if article_id in seed.emptied:
            ts = now - rng.randint(_DAY, 20 * _DAY)
            adjustment = adjustment_order(seed.state, seed.site_id, [(article_id, -received)], ts)
            seed.orders.append((ts, adjustment))
            move = adjustment_move(article_id, -received, adjustment)
            seed.move(article_id, received, ts, **{**move, "user_id": "operator-02"})
        seed.state.stock(seed.site_id, article_id).free = final_free
    for order in receptions:
        done_ordertask(seed.state, order, [storage_cell(line.article_id) for line in order.lines])


# --- command line --------------------------------------------------------------------------


def run(
    host: str = "127.0.0.1",
    port: int = 8765,
    seed: int = 0,
    articles: int = 1000,
    token: str = DEFAULT_TOKEN,
    order_list_order: str = "created",
    *,
    pick_moves: str = "at_done",
    placed_at_text: str = "as_sent",
    duplicate_order_ids: str = "refuse",
) -> None:
    """Serve a seeded Instock simulator in the foreground until SIGINT/SIGTERM."""
    sim = InstockSim(
        seed=seed,
        articles=articles,
        token=token,
        host=host,
        port=port,
        order_list_order=order_list_order,
        pick_moves=pick_moves,
        placed_at_text=placed_at_text,
        duplicate_order_ids=duplicate_order_ids,
    )
    sim.start()
    print(f"instock sandbox: {sim.base_url}", flush=True)
    print(f"  sites: {', '.join(sim.state.sites)}; articles: {articles}; seed: {seed}", flush=True)
    print(
        f"  orders listed: {order_list_order}; pick moves: {pick_moves}; placed_at: "
        f"{placed_at_text}; duplicate order ids: {duplicate_order_ids} "
        "(readings where the document does not say)",
        flush=True,
    )
    sim.server.serve_forever()
