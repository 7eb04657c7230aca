"""Host inbox: settled files are validated row by row, loaded in one transaction, moved."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from syncd.config import HostConfig
from syncd.errors import ConfigError
from syncd.host import FEEDS, LoadResult, host_options, load_file, load_inbox, scan_inbox
from syncd.host.feeds.options import FeedOptions
from syncd.state import Store
from tests.unit.hostkit import drop

ARTICLES_HEADER = "article_id,name,unit,is_serial_numbered,dim_x,dim_y,dim_z,dim_uom,attr.upc\n"


def load(db: Store, host: Path, **feeds: dict[str, Any]) -> list[LoadResult]:
    config = HostConfig(dir=host, settle_time=5, options={"feeds": feeds} if feeds else {})
    return load_inbox(db, host, config, "run-1")


def articles(*ids: str, name: str = "Article") -> str:
    return ARTICLES_HEADER + "".join(f"{i},{name} {i},EA,false,1,2,3,in,0{i}\n" for i in ids)


def rejects(db: Store) -> list[dict[str, Any]]:
    return db.query(
        "SELECT source, reference, field, reason, payload, status FROM rejects ORDER BY id"
    )


# -- row validation -----------------------------------------------------------------


def test_malformed_rows_are_rejected_with_file_line_field_and_reason_while_good_rows_load(
    db: Store, host: Path
) -> None:
    """A bad number, a missing field and a negative qty each become a reject naming file,
    line, field and reason, with the raw row; the other rows load and the file is archived."""
    drop(
        host,
        "stock-0001.csv",
        "article_id,location,qty\n"
        "A1,,10\n"
        "A2,,ten\n"  # line 3: not a number
        ",,4\n"  # line 4: missing article_id
        "A4,B-01,-2\n"  # line 5: negative
        "A5,B-01,2.5\n",
    )
    [result] = load(db, host)
    assert (result.status, result.loaded, result.rejected) == ("archived", 2, 3)
    assert (host / "archive" / "stock-0001.csv").exists()
    assert not (host / "inbox" / "stock-0001.csv").exists()
    assert db.query("SELECT article_id, location, qty, file, line FROM host_stock ORDER BY 1") == [
        {"article_id": "A1", "location": "", "qty": 10, "file": "stock-0001.csv", "line": 2},
        {"article_id": "A5", "location": "B-01", "qty": 2.5, "file": "stock-0001.csv", "line": 6},
    ]
    bad = rejects(db)
    assert [(r["reference"], r["field"]) for r in bad] == [
        ("stock-0001.csv:3", "qty"),
        ("stock-0001.csv:4", "article_id"),
        ("stock-0001.csv:5", "qty"),
    ]
    assert all(r["source"] == "host:stock" and r["status"] == "open" for r in bad)
    assert "valid decimal" in bad[0]["reason"]
    assert "'ten'" in bad[0]["reason"]
    assert bad[1]["reason"] == "article_id: required"
    assert "greater than or equal to 0" in bad[2]["reason"]
    assert json.loads(bad[0]["payload"]) == {"article_id": "A2", "location": "", "qty": "ten"}
    [loaded] = db.query("SELECT * FROM host_files")
    assert (loaded["status"], loaded["rows_loaded"], loaded["rows_rejected"]) == ("loaded", 2, 3)
    assert loaded["size"] == (host / "archive" / "stock-0001.csv").stat().st_size


def test_csv_row_with_wrong_field_count_or_bad_quoting_is_rejected_alone(
    db: Store, host: Path
) -> None:
    """A row with too many cells or broken quoting is one reject; the rows after it still load."""
    drop(host, "stock.csv", 'article_id,qty\nA1,1\nA2,2,extra\n"A3"x,3\nA4,4\n')
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (2, 2)
    assert next(r["reason"] for r in rejects(db)) == "expected 2 fields, found 3"
    assert db.query("SELECT article_id FROM host_stock ORDER BY 1") == [
        {"article_id": "A1"},
        {"article_id": "A4"},
    ]


def test_article_rows_are_strict_about_flags_dimensions_and_attributes(
    db: Store, host: Path
) -> None:
    """Articles: a bad flag, half a set of dimensions and an unknown uom are rejected by
    their CSV column name; exact decimals and barcodes with leading zeros are kept."""
    drop(
        host,
        "articles-1.csv",
        ARTICLES_HEADER
        + '116000487727,"Cheerios Original Cereal, 12 Oz",EA,false,7.750,12,2.75,in,016000275287\n'
        + "A2,Oats,EA,maybe,,,,,\n"
        + "A3,Thing,EA,false,1,2,,in,\n"
        + "A4,Thing,EA,false,1,2,3,furlong,\n",
    )
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (1, 3)
    [row] = db.query("SELECT * FROM host_articles")
    assert row["name"] == "Cheerios Original Cereal, 12 Oz"
    assert (row["dim_x"], row["dim_y"], row["dim_z"], row["dim_uom"]) == (
        "7.75",
        "12",
        "2.75",
        "in",
    )
    assert json.loads(row["attributes"]) == {"upc": "016000275287"}
    assert (row["whole_units"], row["is_serial_numbered"], row["unit"]) == (1, 0, "EA")
    assert [r["field"] for r in rejects(db)] == ["is_serial_numbered", "dim_z", "dim_uom"]


def test_jsonl_rows_must_have_their_json_types(db: Store, host: Path) -> None:
    """JSON Lines: a quoted number, a numeric barcode, an unknown key and a broken line are
    each rejected with the line and field; nested dimensions load like the CSV columns."""
    lines = [
        {
            "article_id": "A1",
            "name": "Oats",
            "dimensions": {"x": "7.75", "y": 12, "z": 2.75, "uom": "in"},
            "attributes": {"upc": "016000275287"},
        },
        {"article_id": "A2", "name": "Oats", "is_serial_numbered": "false"},
        {"article_id": "A3", "name": "Oats", "attributes": {"upc": 16000275287}},
        {"article_id": "A4", "name": "Oats", "colour": "red"},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + '\n{"article_id": "A5", \n\n'
    drop(host, "articles.jsonl", text)
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (1, 4)
    [row] = db.query("SELECT dim_x, dim_y, dim_z, attributes FROM host_articles")
    assert row == {
        "dim_x": "7.75",
        "dim_y": "12",
        "dim_z": "2.75",
        "attributes": '{"upc":"016000275287"}',
    }
    assert [(r["reference"], r["field"]) for r in rejects(db)] == [
        ("articles.jsonl:2", "is_serial_numbered"),
        ("articles.jsonl:3", "attributes.upc"),
        ("articles.jsonl:4", "colour"),
        ("articles.jsonl:5", None),
    ]
    assert rejects(db)[3]["reason"].startswith("Invalid JSON")
    assert rejects(db)[3]["payload"] == '{"article_id": "A5",'


# -- whole-file refusals ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(b"article_id,name\nA1,Caf\xe9 cr\xe8me\n", "not UTF-8", id="latin-1"),
        pytest.param(
            b"A1,Oats\nA2,Bran\n", "missing required column(s): article_id, name", id="no-header"
        ),
        pytest.param(
            b"article_id,description\nA1,Oats\n",
            "missing required column(s): name",
            id="missing-column",
        ),
        pytest.param(
            b"article_id,name,colour\nA1,Oats,red\n",
            "unknown column(s): 'colour'",
            id="unknown-column",
        ),
        pytest.param(b"", "empty file", id="empty"),
    ],
)
def test_unreadable_file_moves_to_rejects_with_errors_json(
    db: Store, host: Path, content: bytes, reason: str
) -> None:
    """A file that cannot be read as its feed (not UTF-8, no or wrong header, empty) moves to
    rejects/ with <name>.errors.json beside it and one open reject row; nothing loads."""
    drop(host, "articles-7.csv", content)
    [result] = load(db, host)
    assert result.status == "rejected_file"
    assert reason in (result.reason or "")
    assert (host / "rejects" / "articles-7.csv").read_bytes() == content
    errors = json.loads((host / "rejects" / "articles-7.csv.errors.json").read_text())
    assert errors["file"] == "articles-7.csv"
    assert reason in errors["reason"]
    assert "details" in errors
    assert db.scalar("SELECT count(*) FROM host_articles") == 0
    [row] = rejects(db)
    assert (row["source"], row["reference"], row["status"]) == (
        "host:articles",
        "articles-7.csv",
        "open",
    )
    assert reason in row["reason"]
    assert db.scalar("SELECT status FROM host_files") == "rejected"


def test_refused_file_put_back_is_refused_again_without_a_second_reject(
    db: Store, host: Path
) -> None:
    """The same refused bytes found in the inbox again (a crash before the move) keep one
    open reject row; the second copy gets its own name in rejects/, never overwriting."""
    drop(host, "stock-1.csv", b"qty\n1\n")
    load(db, host)
    shutil.copy(host / "rejects" / "stock-1.csv", host / "inbox" / "stock-1.csv")
    os.utime(host / "inbox" / "stock-1.csv", (time.time() - 60,) * 2)
    [result] = load(db, host)
    assert result.status == "rejected_file"
    assert result.moved_to is not None
    assert result.moved_to.parent == host / "rejects"
    assert result.moved_to.name.startswith("stock-1.2")  # stock-1.<UTC time>.csv
    assert (host / "rejects" / "stock-1.csv").exists()
    assert result.moved_to.with_name(result.moved_to.name + ".errors.json").exists()
    assert len(rejects(db)) == 1


def test_configured_format_refuses_the_other_format(db: Store, host: Path) -> None:
    """A feed configured for csv refuses a .jsonl file whole rather than guess."""
    drop(host, "stock.jsonl", '{"article_id": "A1", "qty": 1}\n')
    [result] = load(db, host, stock={"format": "csv"})
    assert result.status == "rejected_file"
    assert "configured for csv" in (result.reason or "")


# -- finding files -----------------------------------------------------------------------


def test_half_written_and_foreign_files_are_ignored(host: Path) -> None:
    """Temp names, dot files, files younger than settle_time and names of no feed stay put."""
    drop(host, "articles-1.csv", articles("A1"))
    drop(host, "articles-2.csv.tmp", articles("A2"))
    drop(host, ".articles-3.csv", articles("A3"))
    drop(host, "articles-4.csv.part", articles("A4"))
    drop(host, "customers-1.csv", "x\n1\n")
    drop(host, "articlesX.csv", articles("A5"))
    young = host / "inbox" / "stock-9.csv"
    young.write_text("article_id,qty\nA1,1\n")  # mtime: now
    found = scan_inbox(host, settle_time=5)
    assert [(f.feed, f.path.name, f.format) for f in found] == [
        ("articles", "articles-1.csv", "csv")
    ]
    later = scan_inbox(host, settle_time=5, now=time.time() + 10)
    assert {f.path.name for f in later} == {"articles-1.csv", "stock-9.csv"}


def test_files_are_loaded_oldest_first(db: Store, host: Path) -> None:
    """Files apply in the order the host wrote them (mtime), not in name order."""
    drop(host, "stock-b.csv", "article_id,qty\nA1,5\n")
    drop(host, "stock-a.csv", "article_id,qty\nA1,7\n")
    results = load(db, host, stock={"mode": "delta"})
    assert [r.file for r in results] == ["stock-b.csv", "stock-a.csv"]
    assert db.scalar("SELECT qty FROM host_stock") == 7


def test_utf8_bom_and_padded_cells_are_accepted(db: Store, host: Path) -> None:
    """A BOM (as Excel writes) and cells padded with spaces read as the plain values."""
    drop(host, "stock.csv", "\ufeffarticle_id , qty\n A1 , 3 \n".encode())
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (1, 0)
    assert db.query("SELECT article_id, qty FROM host_stock") == [{"article_id": "A1", "qty": 3}]


# -- snapshot and delta ----------------------------------------------------------------


def test_snapshot_deletes_absent_rows_and_keeps_provenance_of_unchanged_ones(
    db: Store, host: Path
) -> None:
    """A snapshot is the whole truth: absent rows are deleted; an unchanged row keeps the
    file and load it came from, a changed one points at the new file."""
    drop(host, "articles-1.csv", articles("A1", "A2", "A3", "A4"))
    load(db, host)
    drop(host, "articles-2.csv", articles("A1", "A2", "A3").replace("Article A3", "Renamed A3"))
    [result] = load(db, host)
    assert (result.loaded, result.changed, result.deleted) == (3, 1, 1)
    rows = db.query("SELECT article_id, name, file FROM host_articles ORDER BY 1")
    assert rows == [
        {"article_id": "A1", "name": "Article A1", "file": "articles-1.csv"},
        {"article_id": "A2", "name": "Article A2", "file": "articles-1.csv"},
        {"article_id": "A3", "name": "Renamed A3", "file": "articles-2.csv"},
    ]


def test_snapshot_keeps_a_row_whose_new_version_was_rejected(db: Store, host: Path) -> None:
    """A row present in the snapshot but invalid is not 'absent': its old version stays."""
    drop(host, "articles-1.csv", articles("A1", "A2", "A3"))
    load(db, host)
    drop(
        host,
        "articles-2.csv",
        ARTICLES_HEADER + "A1,,EA,false,,,,,\nA2,Two,EA,false,,,,,\nA3,Three,EA,false,,,,,\n",
    )
    [result] = load(db, host)
    assert (result.loaded, result.rejected, result.deleted) == (2, 1, 0)
    assert db.scalar("SELECT name FROM host_articles WHERE article_id = 'A1'") == "Article A1"


def test_mass_delete_guard_refuses_a_truncated_snapshot_until_allowed(
    db: Store, host: Path
) -> None:
    """A snapshot that would delete more than max_delete_fraction of the table is refused
    whole (rejects/, errors.json, an alert), and loads once allow_mass_delete is set."""
    drop(host, "articles-1.csv", articles(*(f"A{i}" for i in range(10))))
    load(db, host)
    drop(host, "articles-2.csv", articles("A0", "A1"))
    [result] = load(db, host)
    assert result.status == "rejected_file"
    assert "would delete 8 of 10" in (result.reason or "")
    assert db.scalar("SELECT count(*) FROM host_articles") == 10
    errors = json.loads((host / "rejects" / "articles-2.csv.errors.json").read_text())
    assert errors["details"]["would_delete"] == 8
    assert errors["details"]["existing_rows"] == 10
    [alert] = db.open_alerts("host_feed_guard")
    assert alert["subject"] == "articles"
    assert "allow_mass_delete" in alert["message"]
    assert [r["reference"] for r in rejects(db)] == ["articles-2.csv"]

    shutil.move(host / "rejects" / "articles-2.csv", host / "inbox" / "articles-2.csv")
    os.utime(host / "inbox" / "articles-2.csv", (time.time() - 60,) * 2)
    [result] = load(db, host, articles={"allow_mass_delete": True})
    assert (result.status, result.deleted) == ("archived", 8)
    assert db.scalar("SELECT count(*) FROM host_articles") == 2
    assert db.open_alerts("host_feed_guard") == []  # a good load of the feed resolves it


def test_header_only_snapshot_is_refused_by_the_guard(db: Store, host: Path) -> None:
    """An empty (header-only) stock snapshot does not wipe the book stock."""
    drop(host, "stock-1.csv", "article_id,qty\nA1,1\nA2,2\n")
    load(db, host)
    drop(host, "stock-2.csv", "article_id,qty\n")
    [result] = load(db, host)
    assert result.status == "rejected_file"
    assert db.scalar("SELECT count(*) FROM host_stock") == 2


def test_delta_feed_upserts_and_deletes_nothing(db: Store, host: Path) -> None:
    """Delta mode inserts new keys and updates changed ones; absent rows stay."""
    drop(host, "stock-1.csv", "article_id,location,qty\nA1,,1\nA2,,2\nA3,X,3\n")
    drop(host, "stock-2.csv", "article_id,location,qty\nA2,,20\nA4,,4\n")
    _first, second = load(db, host, stock={"mode": "delta"})
    assert (second.loaded, second.changed, second.deleted) == (2, 2, 0)
    assert db.query("SELECT article_id, location, qty FROM host_stock ORDER BY 1") == [
        {"article_id": "A1", "location": "", "qty": 1},
        {"article_id": "A2", "location": "", "qty": 20},
        {"article_id": "A3", "location": "X", "qty": 3},
        {"article_id": "A4", "location": "", "qty": 4},
    ]


# -- orders ------------------------------------------------------------------------------

ORDERS_HEADER = "action,order_id,line_id,article_id,qty,placed_at,attr.cutoff_time\n"


def order_lines(db: Store, order_id: str) -> list[tuple[str, str, int]]:
    return [
        (r["line_id"], r["article_id"], r["qty"])
        for r in db.query(
            "SELECT * FROM host_order_lines WHERE order_id = ? ORDER BY line_id", [order_id]
        )
    ]


def test_orders_csv_create_then_cancel(db: Store, host: Path) -> None:
    """CSV orders: create rows give an order its lines; a cancel row marks it cancelled and
    keeps its lines; a later create for a cancelled order is rejected, never re-opening it."""
    drop(
        host,
        "orders-1.csv",
        ORDERS_HEADER
        + "create,O1,O1-1,A1,2,2026-11-23T07:38:39Z,2026-11-23T16:00:00Z\n"
        + "create,O1,O1-2,A2,1,2026-11-23T07:38:39Z,2026-11-23T16:00:00Z\n"
        + "create,O2,O2-1,A1,5,,\n",
    )
    drop(host, "orders-2.csv", ORDERS_HEADER + "cancel,O1,,,,,\n")
    drop(host, "orders-3.csv", ORDERS_HEADER + "create,O1,O1-1,A1,9,,\n")
    first, _second, third = load(db, host)
    assert (first.loaded, first.rejected) == (3, 0)
    order = db.query("SELECT * FROM host_orders WHERE order_id = 'O1'")[0]
    assert order["status"] == "cancelled"
    assert order["cancelled_at"] is not None
    assert order["placed_at"] == "2026-11-23T07:38:39.000Z"
    assert json.loads(order["attributes"]) == {"cutoff_time": "2026-11-23T16:00:00Z"}
    assert (order["file"], order["line"]) == ("orders-2.csv", 2)
    assert order_lines(db, "O1") == [("O1-1", "A1", 2), ("O1-2", "A2", 1)]
    assert db.scalar("SELECT status FROM host_orders WHERE order_id = 'O2'") == "open"
    assert (third.loaded, third.rejected) == (0, 1)
    [reject] = rejects(db)
    assert reject["reference"] == "orders-3.csv:2"
    assert "was cancelled (orders-2.csv:2)" in reject["reason"]


def test_order_with_a_bad_line_is_held_back_whole(db: Store, host: Path) -> None:
    """An order is never loaded half: one bad line rejects the order's other rows too (naming
    the bad one), its previous version stays, and other orders in the file load."""
    drop(host, "orders-1.csv", ORDERS_HEADER + "create,O1,1,A1,1,,\n")
    drop(
        host,
        "orders-2.csv",
        ORDERS_HEADER
        + "create,O1,1,A1,4,,\n"
        + "create,O1,2,A2,-1,,\n"
        + "create,O2,1,A1,1,,\n"
        + "create,O2,2,A1,,,\n"
        + "create,O3,1,A3,1.5,,\n"
        + "create,O4,1,A4,3,,\n",
    )
    _, result = load(db, host)
    assert (result.loaded, result.rejected) == (1, 5)
    assert order_lines(db, "O1") == [("1", "A1", 1)]
    assert db.query("SELECT order_id FROM host_orders ORDER BY 1") == [
        {"order_id": "O1"},
        {"order_id": "O4"},
    ]
    bad = {r["reference"]: r for r in rejects(db)}
    assert bad["orders-2.csv:3"]["field"] == "qty"
    assert "held back: its row at orders-2.csv:3 was rejected" in bad["orders-2.csv:2"]["reason"]
    assert bad["orders-2.csv:5"]["field"] == "qty"
    assert "required on a create row" in bad["orders-2.csv:5"]["reason"]
    assert "held back" in bad["orders-2.csv:4"]["reason"]
    assert "valid integer" in bad["orders-2.csv:6"]["reason"]
    assert json.loads(bad["orders-2.csv:2"]["payload"])["qty"] == "4"


def test_order_sent_again_gets_exactly_its_new_lines(db: Store, host: Path) -> None:
    """A create for a known order replaces its lines: changed lines update, missing ones go."""
    drop(host, "orders-1.csv", ORDERS_HEADER + "create,O1,1,A1,1,,\ncreate,O1,2,A2,2,,\n")
    drop(host, "orders-2.csv", ORDERS_HEADER + "create,O1,1,A1,3,,\n")
    load(db, host)
    assert order_lines(db, "O1") == [("1", "A1", 3)]
    assert db.scalar("SELECT file FROM host_orders WHERE order_id = 'O1'") == "orders-2.csv"


def test_jsonl_orders_with_nested_lines(db: Store, host: Path) -> None:
    """JSON Lines orders carry their lines nested; a cancel record needs none, a later record
    of an order replaces its lines, a record with a bad line is rejected whole."""
    records = [
        {
            "action": "create",
            "order_id": "00132455",
            "placed_at": "2026-11-23T08:38:39+01:00",
            "attributes": {"cutoff_time": "2026-11-23T16:00:00Z"},
            "lines": [
                {"line_id": "00132455-1", "article_id": "1003000031678", "qty": 1},
                {"line_id": "00132455-2", "article_id": "116000487727", "qty": 2},
            ],
        },
        {
            "action": "create",
            "order_id": "O2",
            "lines": [{"line_id": "1", "article_id": "A", "qty": 1}],
        },
        {
            "action": "create",
            "order_id": "O2",
            "lines": [{"line_id": "2", "article_id": "B", "qty": 2}],
        },
        {
            "action": "create",
            "order_id": "O3",
            "lines": [{"line_id": "1", "article_id": "A", "qty": 0}],
        },
        {"action": "create", "order_id": "O4", "lines": []},
        {"action": "cancel", "order_id": "O5"},
        {
            "action": "create",
            "order_id": "bad id",
            "lines": [{"line_id": "1", "article_id": "A", "qty": 1}],
        },
    ]
    drop(host, "orders-20261123.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (4, 3)
    order = db.query("SELECT * FROM host_orders WHERE order_id = '00132455'")[0]
    assert order["placed_at"] == "2026-11-23T07:38:39.000Z"
    assert order_lines(db, "00132455") == [
        ("00132455-1", "1003000031678", 1),
        ("00132455-2", "116000487727", 2),
    ]
    assert order_lines(db, "O2") == [("2", "B", 2)]
    assert db.scalar("SELECT status FROM host_orders WHERE order_id = 'O5'") == "cancelled"
    assert [(r["reference"], r["field"]) for r in rejects(db)] == [
        ("orders-20261123.jsonl:4", "lines.0.qty"),
        ("orders-20261123.jsonl:5", "lines"),
        ("orders-20261123.jsonl:7", "order_id"),
    ]


# -- crash safety -----------------------------------------------------------------------


def test_file_found_again_after_commit_is_only_moved(db: Store, host: Path) -> None:
    """A crash between commit and move leaves a loaded file in inbox/: the next scan sees it
    in host_files and only moves it, loading nothing and rejecting nothing twice."""
    drop(host, "orders-1.csv", ORDERS_HEADER + "create,O1,1,A1,1,,\ncreate,O2,1,A1,x,,\n")
    [first] = load(db, host)
    assert (first.loaded, first.rejected) == (1, 1)
    before = db.query("SELECT * FROM host_orders")
    # The crash: the file is back in the inbox, as if the move never happened.
    shutil.copy(host / "archive" / "orders-1.csv", host / "inbox" / "orders-1.csv")
    os.utime(host / "inbox" / "orders-1.csv", (time.time() - 60,) * 2)
    [again] = load(db, host)
    assert again.status == "already_loaded"
    assert (again.loaded, again.rejected) == (1, 1)
    assert not (host / "inbox" / "orders-1.csv").exists()
    assert again.moved_to is not None
    assert {p.name for p in (host / "archive").iterdir()} == {"orders-1.csv", again.moved_to.name}
    assert db.query("SELECT * FROM host_orders") == before
    assert db.scalar("SELECT count(*) FROM rejects") == 1
    assert db.scalar("SELECT count(*) FROM host_files") == 1


def test_file_growing_while_read_is_left_for_the_next_scan(
    db: Store, host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that changes while it is read (the host still writing) loads nothing and
    stays in the inbox; the next scan loads it whole."""
    path = drop(host, "stock.csv", "article_id,qty\nA1,1\n")
    from syncd.host import inbox

    real = inbox.read_rows

    def appending(*args: Any) -> Any:
        yield from real(*args)
        with path.open("a") as fh:
            fh.write("A2,2\n")

    monkeypatch.setattr(inbox, "read_rows", appending)
    [result] = load(db, host)
    assert result.status == "deferred"
    assert path.exists()
    assert db.scalar("SELECT count(*) FROM host_stock") == 0
    assert db.scalar("SELECT count(*) FROM host_files") == 0
    monkeypatch.undo()
    os.utime(path, (time.time() - 60,) * 2)
    [result] = load(db, host)
    assert (result.status, result.loaded) == ("archived", 2)


def test_crash_during_merge_loads_nothing(
    db: Store, host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state DB failure inside the load transaction leaves no rows, no rejects, no
    host_files entry, and the file in the inbox to be loaded whole next time."""
    drop(host, "stock.csv", "article_id,qty\nA1,1\nA2,x\n")
    feed = FEEDS["stock"]

    def boom(*_: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(feed, "merge", boom)
    with pytest.raises(sqlite3.OperationalError):
        load(db, host)
    assert db.scalar("SELECT count(*) FROM host_stock") == 0
    assert db.scalar("SELECT count(*) FROM rejects") == 0
    assert db.scalar("SELECT count(*) FROM host_files") == 0
    monkeypatch.undo()
    [result] = load(db, host)
    assert (result.status, result.loaded, result.rejected) == ("archived", 1, 1)


def test_load_file_moves_a_file_of_another_feed_to_rejects(db: Store, host: Path) -> None:
    """load_file called with the wrong feed refuses the file instead of loading it as that feed."""
    path = drop(host, "stock.csv", "article_id,qty\nA1,1\n")
    result = load_file(db, FEEDS["articles"], path, FeedOptions(), "run-1")
    assert result.status == "rejected_file"


# -- options -----------------------------------------------------------------------------


def test_host_options_defaults_and_errors() -> None:
    """Feeds default to snapshot (orders: delta); an unknown feed or mode is a config error
    naming the key."""
    options = host_options(HostConfig())
    assert options.feed("articles").mode == "snapshot"
    assert options.feed("stock").mode == "snapshot"
    assert options.feed("orders").mode == "delta"
    assert options.feed("articles").max_delete_fraction == 0.5
    assert options.feed("articles").allow_mass_delete is False
    with pytest.raises(ConfigError) as exc:
        host_options(HostConfig(options={"feeds": {"artcles": {}, "stock": {"mode": "full"}}}))
    text = "\n".join(exc.value.problems)
    assert "host.options.feeds.artcles: unknown key" in text
    assert "host.options.feeds.stock.mode" in text


def test_disabled_feed_files_stay_in_the_inbox(db: Store, host: Path) -> None:
    """A feed switched off (or not asked for) leaves its files where they are."""
    drop(host, "stock.csv", "article_id,qty\nA1,1\n")
    drop(host, "articles.csv", articles("A1"))
    results = load(db, host, stock={"enabled": False})
    assert [r.feed for r in results] == ["articles"]
    assert (host / "inbox" / "stock.csv").exists()
    config = HostConfig(dir=host, settle_time=5)
    assert load_inbox(db, host, config, "run-2", feeds=["orders"]) == []


def test_orders_snapshot_deletes_absent_orders_with_their_lines(db: Store, host: Path) -> None:
    """Orders configured as a snapshot: an absent order goes with its lines, while an order
    held back for a bad row keeps its previous version."""
    drop(
        host,
        "orders-1.csv",
        ORDERS_HEADER
        + "".join(f"create,O{i},1,A1,1,,\ncreate,O{i},2,A2,2,,\n" for i in range(1, 5)),
    )
    drop(
        host,
        "orders-2.csv",
        ORDERS_HEADER
        + "create,O1,1,A1,1,,\ncreate,O1,2,A2,2,,\n"
        + "create,O2,1,A1,1,,\ncreate,O2,2,A2,zero,,\n"
        + "create,O3,1,A1,1,,\n",
    )
    _, result = load(db, host, orders={"mode": "snapshot"})
    assert (result.loaded, result.rejected, result.deleted) == (3, 2, 1)
    assert [r["order_id"] for r in db.query("SELECT order_id FROM host_orders ORDER BY 1")] == [
        "O1",
        "O2",
        "O3",
    ]
    assert order_lines(db, "O2") == [("1", "A1", 1), ("2", "A2", 2)]
    assert order_lines(db, "O3") == [("1", "A1", 1)]
    assert db.scalar("SELECT count(*) FROM host_order_lines WHERE order_id = 'O4'") == 0
