"""Property: for every host file, whatever is in it, every data line is loaded or
rejected with file:line and reason (or the file is refused whole, to rejects/), and a
bad file never blocks a good file dropped after it.

Files are generated for every feed, in CSV and JSON Lines: valid rows mixed with
rows with a bad value, a missing field, a stray quote, an extra cell, a repeated
JSON key, numbers spelt every wrong way, spreadsheet empty rows; written as UTF-8,
UTF-8 with a BOM or Latin-1, with LF, CRLF or CR line ends; sometimes cut short at
any byte, sometimes appended to after the load.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from syncd.config import HostConfig
from syncd.host import FEEDS, load_inbox
from syncd.host import inbox as inbox_module
from syncd.state import Store

# Examples per property (a few ms each); `--hypothesis-show-statistics` reports what
# ran. HOST_PROPERTY_SCALE multiplies them for a longer hunt.
_SCALE = float(os.environ.get("HOST_PROPERTY_SCALE", "1"))


def _examples(count: int) -> settings:
    return settings(
        max_examples=max(1, int(count * _SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- valid values -------------------------------------------------------------------

_ID = st.text("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-", min_size=1, max_size=8)
# Text with commas (so CSV quotes it), spaces and non-ASCII letters; never a quote,
# a line break or other characters that end a line.
_TEXT = st.from_regex(r"[A-Za-zéøß日本0-9][A-Za-zéøß日本0-9 ,.]{0,15}[A-Za-z0-9]", fullmatch=True)
_DATE = st.dates(min_value=__import__("datetime").date(2020, 1, 1)).map(lambda d: d.isoformat())


def _decimal(low: int, high: int) -> st.SearchStrategy[str]:
    """Decimal text in [low, high) with up to 6 places and at most 15 significant digits."""
    return st.builds(
        lambda whole, places, frac: f"{whole}.{frac:0{places}d}" if places else str(whole),
        st.integers(low, high - 1),
        st.integers(0, 6),
        st.integers(0, 999_999),
    ).map(lambda t: t if "." not in t else t[: t.index(".") + 7])


_QTY = _decimal(0, 10**8)
_POSITIVE = _decimal(1, 10**8)
_SIGNED = _decimal(-(10**8), 10**8)
_WHOLE = st.integers(1, 10**9).map(str)
_FLAG = st.sampled_from(["true", "false", "YES", "no", "1", "0"])


@dataclass(frozen=True)
class Column:
    name: str
    values: st.SearchStrategy[str]
    kind: str  # id, text, decimal, whole, date, flag
    required: bool = True


FEED_COLUMNS: dict[str, list[Column]] = {
    "articles": [
        Column("article_id", _ID, "id"),
        Column("name", _TEXT, "text"),
        Column("description", _TEXT, "text", False),
        Column("whole_units", _FLAG, "flag", False),
    ],
    "stock": [
        Column("article_id", _ID, "id"),
        Column("location", _ID, "id", False),
        Column("qty", _QTY, "decimal"),
    ],
    "orders": [
        Column("action", st.just("create"), "text"),
        Column("order_id", _ID, "id"),
        Column("line_id", _ID, "id"),
        Column("article_id", _ID, "id"),
        Column("qty", _WHOLE, "whole"),
    ],
    "locations": [
        Column("location_id", _ID, "id"),
        Column("name", _TEXT, "text"),
        Column("active", _FLAG, "flag", False),
    ],
    "suppliers": [
        Column("supplier_id", _ID, "id"),
        Column("name", _TEXT, "text"),
        Column("lead_time_days", st.integers(0, 3650).map(str), "whole", False),
    ],
    "sales": [
        Column("transaction_id", _ID, "id"),
        Column("line_id", _ID, "id", False),
        Column("sale_date", _DATE, "date"),
        Column("article_id", _ID, "id"),
        Column("qty", _SIGNED, "decimal"),
        Column("sales_value", _SIGNED, "decimal", False),
    ],
    "purchase_orders": [
        Column("po_number", _ID, "id"),
        Column("supplier_id", st.just("S1"), "id"),
        Column("order_date", st.just("2026-11-02"), "date"),
        Column("line_no", _ID, "id"),
        Column("article_id", _ID, "id"),
        Column("qty_ordered", _POSITIVE, "decimal"),
    ],
    "po_history": [
        Column("po_number", _ID, "id"),
        Column("line_no", _ID, "id"),
        Column("article_id", _ID, "id"),
        Column("supplier_id", _ID, "id"),
        Column("order_date", _DATE, "date"),
        Column("receipt_date", _DATE, "date"),
        Column("qty_ordered", _POSITIVE, "decimal"),
        Column("qty_received", _QTY, "decimal"),
    ],
}
# JSON Lines orders and purchase orders nest their lines.
_NESTED = {
    "orders": ("action", "order_id"),
    "purchase_orders": ("po_number", "supplier_id", "order_date"),
}

# Spellings no number field takes (whatever its bounds).
BAD_NUMBERS = [
    "٣",
    "1_000",
    "1e3",
    "+5",
    "1,5",
    "NaN",
    "Infinity",
    "abc",
    "12345678901234567890123",
    "0x10",
    "１２",
]
BAD_DECIMALS = [*BAD_NUMBERS, "1.1234567", ".5"]
BAD_WHOLES = [*BAD_NUMBERS, "5.0", "0", "-3", "1000000001"]


# -- rows and files -------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One generated line: its text and whether it must be rejected."""

    text: str
    bad: bool


def _csv_line(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()[:-1]


def _json_value(column: Column, text: str) -> Any:
    if text in BAD_WHOLES or text in BAD_DECIMALS:
        return text  # a string where a number belongs, or a number spelt wrong
    if column.kind == "whole":
        return int(text)
    if column.kind == "flag":
        return text.lower() in ("true", "yes", "1")
    return text  # ids, text, dates; decimals are given as strings or numbers below


@st.composite
def rows(draw: Any, feed: str, fmt: str) -> Item:
    columns = FEED_COLUMNS[feed]
    values = {c.name: draw(c.values) for c in columns if c.required or draw(st.booleans())}
    flaw = draw(
        st.sampled_from(
            ["none"] * 4
            + ["number", "missing", "blank"]
            + (["quote", "extra"] if fmt == "csv" else ["dup_key", "not_json", "exponent"])
        )
    )
    numeric = [c for c in columns if c.kind in ("decimal", "whole") and c.required]
    if flaw == "blank":
        blanks = ["", "   "] if fmt == "jsonl" else ["", ",", ",,,", " , "]
        return Item(draw(st.sampled_from(blanks)), False)
    if flaw == "number" and numeric:
        column = draw(st.sampled_from(numeric))
        values[column.name] = draw(
            st.sampled_from(BAD_DECIMALS if column.kind == "decimal" else BAD_WHOLES)
        )
    elif flaw == "missing":
        values.pop(draw(st.sampled_from([c.name for c in columns if c.required])))
    elif flaw == "number":
        flaw = "none"
    if fmt == "csv":
        cells = [values.get(c.name, "") for c in columns]
        line = _csv_line(cells)
        if flaw == "quote":
            # One stray quote opening a cell: the rest of the line (no other quote)
            # and the lines after it would be one quoted field.
            cells = [cell.replace(",", " ") for cell in cells]
            filled = [i for i, cell in enumerate(cells) if cell[:1].isalnum()]
            at = draw(st.sampled_from(filled))
            cells[at] = '"' + cells[at]
            line = ",".join(cells)
        elif flaw == "extra":
            line += ",extra"
        return Item(line, flaw != "none")
    record = _json_record(feed, values, draw)
    text = json.dumps(record, ensure_ascii=draw(st.booleans()))
    if flaw == "dup_key":
        first = next(iter(record))
        text = text[:-1] + f", {json.dumps(first)}: {json.dumps(record[first])}" + "}"
    elif flaw == "not_json":
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif flaw == "exponent":
        text = text[:-1] + ', "qty": 1e3}'
    return Item(text, flaw != "none")


def _json_record(feed: str, values: dict[str, str], draw: Any) -> dict[str, Any]:
    columns = {c.name: c for c in FEED_COLUMNS[feed]}
    typed: dict[str, Any] = {}
    for name, text in values.items():
        column = columns[name]
        value = _json_value(column, text)
        if column.kind == "decimal" and text not in BAD_DECIMALS and draw(st.booleans()):
            value = float(text) if "." in text else int(text)  # a JSON number
        typed[name] = value
    if feed not in _NESTED:
        return typed
    header = _NESTED[feed]
    outer = {k: typed.pop(k) for k in header if k in typed}
    outer["lines"] = [typed]
    return outer


@st.composite
def hostile_files(draw: Any) -> tuple[str, str, bytes, list[Item]]:
    feed = draw(st.sampled_from(sorted(FEEDS)))
    fmt = draw(st.sampled_from(["csv", "jsonl"]))
    items = draw(st.lists(rows(feed, fmt), min_size=0, max_size=12))
    header = [] if fmt == "jsonl" else [",".join(c.name for c in FEED_COLUMNS[feed])]
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))  # "\r": old Mac-style exports
    text = newline.join([*header, *(i.text for i in items)]) + newline
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 4)) == 0:  # cut short anywhere
        data = data[: draw(st.integers(0, len(data)))]
    return feed, fmt, data, items


# -- the accounting check ----------------------------------------------------------------

_LINE_END = re.compile(r"\r\n|\r|\n")


def data_lines(data: bytes, fmt: str) -> dict[int, str] | None:
    """Line number -> text of every data line, or None when the file is not UTF-8."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    lines = _LINE_END.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    first = 2 if fmt == "csv" else 1
    return {
        number: line
        for number, line in enumerate(lines[first - 1 :], start=first)
        if line.strip(None if fmt == "jsonl" else " \t,")  # CSV: only commas is a blank row
    }


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "s.db"
    with Store.open(path):
        pass
    return path


@dataclass
class Site:
    root: Path
    store: Store
    clock: float = 1_700_000_000.0

    @property
    def host(self) -> Path:
        return self.root / "host"

    def drop(self, name: str, data: bytes) -> Path:
        path = self.host / "inbox" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.clock += 1
        os.utime(path, (self.clock, self.clock))
        return path

    def load(self) -> list[Any]:
        config = HostConfig(dir=self.host, settle_time=5)
        return load_inbox(self.store, self.host, config, "prop")

    def file_rejects(self, name: str) -> list[dict[str, Any]]:
        return self.store.query(
            "SELECT * FROM rejects WHERE reference = ? OR reference LIKE ? ORDER BY id",
            [name, f"{name}:%"],
        )


def site(template: Path) -> Iterator[Site]:
    root = Path(tempfile.mkdtemp(prefix="hostprop-"))
    shutil.copy(template, root / "s.db")
    try:
        with Store.open(root / "s.db") as store:
            yield Site(root, store)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def check_accounting(s: Site, result: Any, data: bytes, fmt: str, items: list[Item]) -> None:
    """Every data line of the file is loaded or rejected (file:line, reason); a file
    refused whole is in rejects/ with its errors.json and one reject row."""
    name = result.file
    rejects = s.file_rejects(name)
    lines = data_lines(data, fmt)
    if result.status == "rejected_file":
        assert (s.host / "rejects" / name).exists()
        assert (s.host / "rejects" / f"{name}.errors.json").exists()
        assert [r["reference"] for r in rejects] == [name]
        assert rejects[0]["reason"].startswith("file refused: ")
        return
    assert lines is not None, "a file that is not UTF-8 must be refused whole"
    assert result.status in ("archived", "changed_after_load"), result
    [loaded] = s.store.query(
        "SELECT * FROM host_files WHERE name = ? AND status = 'loaded'", [name]
    )
    assert loaded["rows_loaded"] + loaded["rows_rejected"] == len(lines)
    assert (result.loaded, result.rejected) == (loaded["rows_loaded"], loaded["rows_rejected"])
    row_rejects = [r for r in rejects if ":" in r["reference"]]
    assert len(row_rejects) == result.rejected
    rejected_lines = [int(r["reference"].rsplit(":", 1)[1]) for r in row_rejects]
    assert len(set(rejected_lines)) == len(rejected_lines)
    assert set(rejected_lines) <= set(lines)
    assert all(r["reason"] for r in row_rejects)
    # Lines generated bad are among the rejected ones (unless the cut changed them).
    text = data.decode("utf-8-sig")
    whole_lines = len(_LINE_END.findall(text))
    first = 2 if fmt == "csv" else 1
    for offset, item in enumerate(items):
        number = first + offset
        if item.bad and number in lines and number < whole_lines + 1 and lines[number] == item.text:
            assert number in rejected_lines, (number, item.text)


# -- the properties ---------------------------------------------------------------------

FOLLOWER = {"csv": "location_id,name\nF1,Follower one\nF2,Follower two\n"}


@_examples(150)
@given(hostile=hostile_files())
def test_every_data_line_is_loaded_or_rejected_and_a_bad_file_blocks_nothing(
    template_db: Path, hostile: tuple[str, str, bytes, list[Item]]
) -> None:
    """The accounting rule holds for every generated file of every feed, and good files
    dropped after it (another feed, and the same feed when it is a delta) load whole."""
    feed, fmt, data, items = hostile
    for s in site(template_db):
        name = f"{feed}-hostile.{fmt}"
        s.drop(name, data)
        followers = {"locations-after.csv": FOLLOWER["csv"]}
        if feed == "locations":
            followers = {"suppliers-after.csv": "supplier_id,name\nF1,One\nF2,Two\n"}
        if feed == "sales":
            followers["sales-after.csv"] = (
                "transaction_id,sale_date,article_id,qty\nF1,2026-11-23,A1,1\nF2,2026-11-23,A1,2\n"
            )
        for follower, text in followers.items():
            s.drop(follower, text.encode())
        results = {r.file: r for r in s.load()}
        assert set(results) == {name, *followers}
        event(f"{fmt} file {results[name].status}")
        event(f"rows rejected: {'some' if results[name].rejected else 'none'}")
        check_accounting(s, results[name], data, fmt, items)
        for follower in followers:
            assert (results[follower].status, results[follower].loaded) == ("archived", 2)


@_examples(50)
@given(
    hostile=hostile_files(), appended=st.lists(st.sampled_from(["A9,9", "", "junk"]), min_size=1)
)
def test_rows_appended_after_the_load_are_never_archived_unloaded(
    template_db: Path,
    hostile: tuple[str, str, bytes, list[Item]],
    appended: list[str],
) -> None:
    """Whatever a file holds, bytes appended after its load committed send it to
    rejects/ (never archive/) with what was loaded accounted for; put back, it is
    loaded whole and accounted for again."""
    feed, fmt, data, items = hostile
    extra = ("\n".join(appended) + "\n").encode()
    for s in site(template_db):
        name = f"{feed}-grows.{fmt}"
        path = s.drop(name, data)

        def host_appends(p: Path) -> None:
            with p.open("ab") as fh:
                fh.write(extra)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(inbox_module, "_before_archive", host_appends)
            [result] = s.load()
        if result.status == "rejected_file":
            check_accounting(s, result, data, fmt, items)
            continue
        assert result.status == "changed_after_load"
        check_accounting(s, result, data, fmt, items)
        assert not (s.host / "archive").exists() or not list((s.host / "archive").iterdir())
        assert (s.host / "rejects" / name).read_bytes() == data + extra
        os.replace(s.host / "rejects" / name, path)
        s.clock += 1
        os.utime(path, (s.clock, s.clock))
        [again] = s.load()
        grown = data + extra
        if again.status == "archived":
            lines = data_lines(grown, fmt)
            assert lines is not None
            assert again.loaded + again.rejected == len(lines)
        else:  # e.g. the snapshot guard, or the cut left no valid header
            assert again.status == "rejected_file"
