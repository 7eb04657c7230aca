"""Host inbox against hostile files: stray quotes, numbers out of range or oddly spelt,
duplicated JSON keys, files that break the loader, change after loading, or are not
files at all. Each bad thing costs its own row or file, never the ones after it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncd.config import HostConfig, Settings
from syncd.host import FEEDS, LoadResult, load_inbox, reading
from syncd.host import inbox as inbox_module
from syncd.jobs.host_inbox import SPEC as HOST_INBOX
from syncd.jobs.runner import run_job
from syncd.state import Store
from tests.unit.hostkit import drop, settle


def load(db: Store, host: Path) -> list[LoadResult]:
    return load_inbox(db, host, HostConfig(dir=host, settle_time=5), "run-1")


def rejects(db: Store) -> dict[str, dict[str, Any]]:
    return {r["reference"]: r for r in db.query("SELECT * FROM rejects ORDER BY id")}


def stock(db: Store) -> dict[str, Any]:
    return {r["article_id"]: r["qty"] for r in db.query("SELECT * FROM host_stock")}


# -- 1. a stray quote costs one row --------------------------------------------------


def test_unbalanced_quote_rejects_its_line_and_the_rows_after_it_load(
    db: Store, host: Path
) -> None:
    """A quote that is never closed is rejected by its line number; the five good rows
    after it load, and the counts add up to the file's data lines."""
    good_after = "".join(f"A{i},{i}\n" for i in range(3, 8))
    drop(host, "stock.csv", 'article_id,qty\nA1,1\nA2,"2\n' + good_after)
    [result] = load(db, host)
    assert (result.status, result.loaded, result.rejected) == ("archived", 6, 1)
    assert set(stock(db)) == {"A1", "A3", "A4", "A5", "A6", "A7"}
    [bad] = rejects(db).values()
    assert bad["reference"] == "stock.csv:3"
    assert "quote" in bad["reason"]
    assert "read on their own" in bad["reason"]
    assert bad["payload"] == 'A2,"2'


def test_stray_quote_closed_by_a_later_quote_still_costs_one_row(db: Store, host: Path) -> None:
    """A stray quote that a later quoted cell seems to close is still one reject: the rows
    between are read again on their own, and a legitimate quoted line break still loads."""
    drop(
        host,
        "articles.csv",
        "article_id,name,description\n"
        'A1,"Oats, rolled",plain\n'
        'A2,"Bad quote,x\n'  # line 3: never closed properly
        "A3,Rice,plain\n"
        'A4,"Beans, red",plain\n'  # its first quote "closes" line 3's
        'A5,Soup,"two\nlines"\n'  # a real line break inside quotes: lines 6-7
        "A6,Salt,plain\n",
    )
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (5, 1)
    assert list(rejects(db)) == ["articles.csv:3"]
    rows = {r["article_id"]: r for r in db.query("SELECT * FROM host_articles")}
    assert set(rows) == {"A1", "A3", "A4", "A5", "A6"}
    assert rows["A5"]["description"] == "two\nlines"
    assert rows["A6"]["line"] == 8


def test_two_stray_quotes_that_make_one_invalid_row_cost_only_the_first_line(
    db: Store, host: Path
) -> None:
    """Two stray quotes can join lines into a row of the right width; when that row is
    invalid, only its first line is rejected and the lines it took in are read again."""
    drop(host, "stock.csv", 'article_id,qty\n"A2,2\nA3,3\nA4",4\nA5,5\n')
    [result] = load(db, host)
    assert result.loaded + result.rejected == 4
    assert "stock.csv:2" in rejects(db)
    assert "read on their own" in rejects(db)["stock.csv:2"]["reason"]
    assert {"A3", "A5"} <= set(stock(db))


def test_a_quoted_field_is_bounded_in_lines(db: Store, host: Path) -> None:
    """A quoted field may not run on for more than MAX_RECORD_LINES lines: past that its
    first line is rejected and every following line is read on its own."""
    span = reading.MAX_RECORD_LINES + 5
    body = 'A1,"open\n' + "".join(f"A{i},{i}\n" for i in range(2, span)) + 'x",1\nB1,1\n'
    drop(host, "stock.csv", "article_id,qty\n" + body)
    [result] = load(db, host)
    data_lines = body.count("\n")
    assert result.loaded + result.rejected == data_lines
    first = rejects(db)["stock.csv:2"]
    assert f"not closed within {reading.MAX_RECORD_LINES} lines" in first["reason"]
    assert {"A2", f"A{span - 1}", "B1"} <= set(stock(db))


def test_a_line_at_the_bound_is_judged_as_a_line_and_a_longer_one_is_skipped(
    db: Store, host: Path
) -> None:
    """A line of exactly MAX_LINE_CHARS characters is an ordinary row, judged on its
    cells (here one larger than the CSV field limit), not taken for a runaway quote; a
    longer one is rejected unread; the rows after both load."""
    limit = reading.MAX_LINE_CHARS
    at_bound = "A1," + "x" * (limit - 3)
    over = "A2," + "y" * (limit + 10)
    drop(
        host,
        "articles.csv",
        f'article_id,name\n{at_bound}\n{over}\nA3,Oats\nA4,"open\n{over}\nA5,Rice\n',
    )
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (2, 4)
    bad = rejects(db)
    assert "field larger than field limit" in bad["articles.csv:2"]["reason"]
    assert bad["articles.csv:3"]["reason"] == f"line longer than {limit} characters"
    assert "runs into a line longer" in bad["articles.csv:5"]["reason"]
    assert bad["articles.csv:6"]["reason"] == f"line longer than {limit} characters"


def test_unparsable_line_keeps_its_key_out_of_a_snapshot_deletion(db: Store, host: Path) -> None:
    """A row whose quote is broken still names its key (read leniently), so the snapshot
    does not delete that key's previous version as absent."""
    drop(host, "stock-1.csv", "article_id,qty\nA1,1\nA2,2\nA3,3\n")
    load(db, host)
    drop(host, "stock-2.csv", 'article_id,qty\nA1,1\nA2,"5\nA3,3\n')
    [result] = load(db, host)
    assert (result.loaded, result.rejected, result.deleted) == (2, 1, 0)
    assert stock(db) == {"A1": 1, "A2": 2, "A3": 3}


# -- 2. out of range, and anything that breaks the loader ------------------------------


def test_a_23_digit_quantity_is_a_row_reject_not_a_stuck_inbox(db: Store, host: Path) -> None:
    """A whole number beyond its documented bound is rejected with the field named, in CSV
    and JSON Lines; the other rows and the files after it load."""
    huge = "12345678901234567890123"
    drop(
        host,
        "orders-1.csv",
        "action,order_id,line_id,article_id,qty\n"
        f"create,O1,O1-1,A1,{huge}\n"
        "create,O2,O2-1,A1,1000000001\n"
        "create,O3,O3-1,A1,1000000000\n",
    )
    drop(
        host,
        "orders-2.jsonl",
        json.dumps(
            {
                "action": "create",
                "order_id": "O4",
                "lines": [{"line_id": "1", "article_id": "A", "qty": int(huge)}],
            }
        )
        + "\n",
    )
    drop(host, "suppliers.csv", f"supplier_id,name,lead_time_days\nS1,One,{huge}\nS2,Two,3\n")
    drop(host, "stock.csv", "article_id,qty\nA1,1\n")
    results = load(db, host)
    assert [(r.file, r.status, r.loaded, r.rejected) for r in results] == [
        ("orders-1.csv", "archived", 1, 2),
        ("orders-2.jsonl", "archived", 0, 1),
        ("suppliers.csv", "archived", 1, 1),
        ("stock.csv", "archived", 1, 0),
    ]
    bad = rejects(db)
    assert bad["orders-1.csv:2"]["field"] == "qty"
    assert "out of range" in bad["orders-1.csv:2"]["reason"]
    assert "less than or equal to 1000000000" in bad["orders-1.csv:3"]["reason"]
    assert bad["orders-2.jsonl:1"]["field"] == "lines.0.qty"
    assert bad["suppliers.csv:2"]["field"] == "lead_time_days"
    assert db.scalar("SELECT qty FROM host_order_lines WHERE order_id = 'O3'") == 1_000_000_000


def stock_staging_overflows_on_boom(monkeypatch: pytest.MonkeyPatch) -> None:
    """Staging stock rows fails the way SQLite refuses a too-large integer, for any batch
    with article BOOM: an error the loader did not foresee."""
    feed = FEEDS["stock"]
    real = feed.stage_rows

    def overflow(db_: Any, rows: Any, fmt: Any) -> None:
        if any(a.row.article_id == "BOOM" for a in rows):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        real(db_, rows, fmt)

    monkeypatch.setattr(feed, "stage_rows", overflow)


def test_a_file_that_breaks_the_loader_goes_to_rejects_and_the_others_load(
    db: Store, host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any unforeseen error while loading one file (here an OverflowError in staging) puts
    that file in rejects/ with its errors.json, a reject row and an alert; later files of
    the same and of other feeds still load, and the next run does not trip on it again."""
    stock_staging_overflows_on_boom(monkeypatch)
    drop(host, "stock-1.csv", "article_id,qty\nA1,1\nBOOM,2\n")
    drop(host, "articles.csv", "article_id,name\nA1,Oats\n")
    drop(host, "stock-2.csv", "article_id,qty\nA1,1\nA2,2\n")
    results = load(db, host)
    assert [(r.file, r.status) for r in results] == [
        ("stock-1.csv", "rejected_file"),
        ("articles.csv", "archived"),
        ("stock-2.csv", "archived"),
    ]
    assert stock(db) == {"A1": 1, "A2": 2}
    report = json.loads((host / "rejects" / "stock-1.csv.errors.json").read_text())
    assert report["reason"].startswith("could not be loaded: OverflowError")
    assert (host / "rejects" / "stock-1.csv").exists()
    [alert] = db.open_alerts(inbox_module.ALERT_FILE_ERROR)
    assert "stock-1.csv" in alert["message"]
    assert "OverflowError" in alert["message"]
    assert rejects(db)["stock-1.csv"]["reason"].startswith("file refused: could not be loaded")
    assert load(db, host) == []


def test_a_file_that_cannot_even_be_moved_to_rejects_does_not_block_the_next(
    db: Store, host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When moving a broken file to rejects/ fails too, an alert says so and the next
    file still loads."""
    monkeypatch.setattr(FEEDS["stock"], "merge", lambda *_: 1 / 0)

    def read_only(*_: Any, **__: Any) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(inbox_module, "write_bytes_atomic", read_only)
    drop(host, "stock.csv", "article_id,qty\nA1,1\n")
    drop(host, "articles.csv", "article_id,name\nA1,Oats\n")
    first, second = load(db, host)
    assert (first.status, second.status) == ("failed", "archived")
    assert "Read-only file system" in (first.reason or "")
    [alert] = db.open_alerts(inbox_module.ALERT_FILE_ERROR)
    assert alert["subject"] == "stock:stock.csv"
    assert (host / "inbox" / "stock.csv").exists()


def test_a_loaded_file_that_cannot_be_archived_is_only_moved_later(
    db: Store, host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose rows committed but whose move to archive/ fails is not refused (its
    rows are in): an alert says so, and the next run only moves it, loading nothing twice."""
    real = inbox_module.move_file

    def archive_refuses(path: Path, directory: Path) -> Path:
        if directory.name == "archive" and path.name == "stock.csv":
            raise PermissionError(13, "Permission denied")
        return real(path, directory)

    monkeypatch.setattr(inbox_module, "move_file", archive_refuses)
    drop(host, "stock.csv", "article_id,qty\nA1,1\n")
    drop(host, "articles.csv", "article_id,name\nA1,Oats\n")
    first, second = load(db, host)
    assert (first.status, first.loaded, second.status) == ("loaded_not_moved", 1, "archived")
    assert "could not be moved" in db.open_alerts(inbox_module.ALERT_FILE_ERROR)[0]["message"]
    assert not (host / "rejects").exists() or not list((host / "rejects").iterdir())
    monkeypatch.undo()
    [again] = load(db, host)
    assert again.status == "already_loaded"
    assert (host / "archive" / "stock.csv").exists()
    assert db.scalar("SELECT count(*) FROM host_files") == 2


def test_the_host_inbox_job_finishes_and_loads_the_files_after_a_broken_one(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the job runner: a file with a 23-digit quantity and a file that breaks the
    loader do not fail the run; the good files of other feeds after them load, and the
    next run has nothing left to trip on."""
    stock_staging_overflows_on_boom(monkeypatch)
    host = settings.host_dir
    drop(host, "orders.csv", "action,order_id,line_id,article_id,qty\ncreate,O1,1,A1," + "9" * 23)
    drop(host, "stock.csv", "article_id,qty\nBOOM,1\n")
    drop(host, "articles.csv", "article_id,name\nA1,Oats\n")
    drop(host, "locations.csv", "location_id,name\nWH1,Main\n")
    first = run_job(HOST_INBOX, settings)
    assert first.status == "ok", first.error
    assert first.counts["files"] == 4
    assert first.counts["files_archived"] == 3
    assert first.counts["files_rejected_file"] == 1
    assert first.counts["rejected"] == 1
    assert sorted(p.name for p in (host / "archive").iterdir()) == [
        "articles.csv",
        "locations.csv",
        "orders.csv",
    ]
    second = run_job(HOST_INBOX, settings)
    assert (second.status, second.counts.get("files", 0)) == ("ok", 0)


# -- 3. one grammar per field type -----------------------------------------------------


@pytest.mark.parametrize(
    "spelt", ["٣", "1_000", "1e3", "+5", "1,5", ".5", "5.", "0x10", "NaN", "Infinity", "١٢"]
)
def test_decimal_cells_accept_only_ascii_positional_numbers(
    db: Store, host: Path, spelt: str
) -> None:
    """A decimal cell is ASCII `-?[0-9]+(.[0-9]+)?`: other digits, separators, a sign,
    exponents and words are rejected with the field named and the value quoted."""
    drop(host, "stock.csv", f'article_id,qty\nA1," 7.50 "\nA2,"{spelt}"\n')
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (1, 1)
    bad = rejects(db)["stock.csv:3"]
    assert bad["field"] == "qty"
    assert "not a valid decimal number" in bad["reason"]
    assert repr(spelt) in bad["reason"]


@pytest.mark.parametrize("spelt", ["٣", "1_000", "1e3", "+5", "5.0", "2,000", "١"])
def test_whole_number_cells_accept_only_ascii_digits(db: Store, host: Path, spelt: str) -> None:
    """An integer cell (order line qty) is ASCII `-?[0-9]+`."""
    drop(
        host,
        "orders.csv",
        f'action,order_id,line_id,article_id,qty\ncreate,O1,1,A1,007\ncreate,O2,1,A1,"{spelt}"\n',
    )
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (1, 1)
    bad = rejects(db)["orders.csv:3"]
    assert bad["field"] == "qty"
    assert "not a valid integer" in bad["reason"]
    assert db.scalar("SELECT qty FROM host_order_lines") == 7


def test_jsonl_numbers_and_duplicated_keys(db: Store, host: Path) -> None:
    """JSON Lines: a duplicated key (top level or nested), an exponent, NaN, a number with
    more digits than a double keeps, and an oddly spelt decimal string are rejected with
    field and reason; plain numbers and decimal strings load exactly."""
    records = [
        '{"article_id": "A1", "qty": 2.5}',
        '{"article_id": "A2", "qty": 1, "qty": 2}',
        '{"article_id": "A3", "qty": 1e3}',
        '{"article_id": "A4", "qty": NaN}',
        '{"article_id": "A5", "qty": 123456789012.123456}',
        '{"article_id": "A6", "qty": "123456789012.123456"}',
        '{"article_id": "A7", "qty": "1_0"}',
        '{"article_id": "A8", "qty": "٣"}',
        '{"article_id": "A9", "location": "L", "qty": 0.1}',
    ]
    drop(host, "stock.jsonl", "\n".join(records) + "\n")
    drop(
        host,
        "orders.jsonl",
        '{"action": "create", "order_id": "O1", "lines": '
        '[{"line_id": "1", "article_id": "A", "qty": 1, "article_id": "B"}]}\n',
    )
    first, second = load(db, host)
    assert (first.loaded, first.rejected, second.loaded, second.rejected) == (3, 6, 0, 1)
    bad = rejects(db)
    assert bad["stock.jsonl:2"]["field"] == "qty"
    assert "appears more than once" in bad["stock.jsonl:2"]["reason"]
    assert "exponent" in bad["stock.jsonl:3"]["reason"]
    assert "NaN is not a JSON number" in bad["stock.jsonl:4"]["reason"]
    assert "give it as a string" in bad["stock.jsonl:5"]["reason"]
    assert bad["stock.jsonl:7"]["field"] == "qty"
    assert "not a valid decimal number" in bad["stock.jsonl:8"]["reason"]
    assert bad["orders.jsonl:1"]["field"] == "lines.0.article_id"
    assert stock(db) == {"A1": 2.5, "A6": 123456789012.123456, "A9": 0.1}
    assert db.scalar("SELECT qty FROM host_stock WHERE article_id = 'A6'") == pytest.approx(
        123456789012.123456
    )


def test_csv_flags_are_the_documented_words(db: Store, host: Path) -> None:
    """A flag cell is true/false, yes/no or 1/0 (any case); `on`, `t` and `y` are not."""
    drop(host, "locations.csv", "location_id,name,active\nL1,One,YES\nL2,Two,on\nL3,Three,t\n")
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (1, 2)
    assert "expected true/false" in rejects(db)["locations.csv:3"]["reason"]


# -- 4. a file that changes after it looked settled --------------------------------------


def test_rows_appended_after_the_load_commits_never_vanish_into_archive(
    db: Store, host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row appended between the commit and the move: the file goes to rejects/ (not
    archive/) with the reason, a reject row and an alert; put back, it loads whole."""
    path = drop(host, "stock.csv", "article_id,qty\nA1,1\nA2,2\n")

    def host_appends(p: Path) -> None:
        with p.open("a") as fh:
            fh.write("A3,3\n")

    monkeypatch.setattr(inbox_module, "_before_archive", host_appends)
    [result] = load(db, host)
    assert (result.status, result.loaded) == ("changed_after_load", 2)
    assert not list((host / "archive").iterdir())
    assert result.moved_to == host / "rejects" / "stock.csv"
    report = json.loads((host / "rejects" / "stock.csv.errors.json").read_text())
    assert report["details"]["bytes_loaded"] == len("article_id,qty\nA1,1\nA2,2\n")
    assert "NOT loaded" in report["reason"]
    assert rejects(db)["stock.csv"]["reason"].startswith("file changed after load")
    [alert] = db.open_alerts(inbox_module.ALERT_FILE_CHANGED)
    assert "stock.csv" in alert["message"]
    assert stock(db) == {"A1": 1, "A2": 2}
    monkeypatch.undo()
    os.replace(result.moved_to, path)  # the operator puts it back
    settle(path)
    [again] = load(db, host)
    assert (again.status, again.loaded) == ("archived", 3)
    assert stock(db) == {"A1": 1, "A2": 2, "A3": 3}


def test_rows_appended_while_the_file_is_moved_are_caught_in_archive(
    db: Store, host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that still holds the file open and appends as it is moved: the archived
    copy is checked again and moved on to rejects/."""
    drop(host, "stock.csv", "article_id,qty\nA1,1\n")
    real = inbox_module.move_file

    def move_and_append(path: Path, directory: Path) -> Path:
        moved = real(path, directory)
        if directory.name == "archive":
            with moved.open("a") as fh:
                fh.write("A2,2\n")
        return moved

    monkeypatch.setattr(inbox_module, "move_file", move_and_append)
    [result] = load(db, host)
    assert result.status == "changed_after_load"
    assert not list((host / "archive").iterdir())
    assert (host / "rejects" / "stock.csv").read_text().endswith("A2,2\n")


def test_a_file_replaced_after_load_stays_to_be_loaded_on_its_own(
    db: Store, host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new file renamed over the name after the load is a different file (another
    inode): it is not archived in place of the one loaded, and loads next."""
    path = drop(host, "stock.csv", "article_id,qty\nA1,1\n")

    def host_replaces(p: Path) -> None:
        fresh = p.with_name(".stock.tmp")
        fresh.write_text("article_id,qty\nA1,1\nB1,5\n")
        os.replace(fresh, p)

    monkeypatch.setattr(inbox_module, "_before_archive", host_replaces)
    [result] = load(db, host)
    assert (result.status, result.moved_to) == ("archived", None)
    assert "replaced" in (result.reason or "")
    monkeypatch.undo()
    settle(path)
    [again] = load(db, host)
    assert (again.status, again.loaded) == ("archived", 2)
    assert stock(db) == {"A1": 1, "B1": 5}


# -- 5. not a regular file ----------------------------------------------------------------


def test_symlink_fifo_and_directory_with_feed_names_are_rejected_once_unopened(
    db: Store, host: Path, tmp_path: Path
) -> None:
    """A symlink (never followed), a FIFO (never opened) and a directory named like feed
    files go to rejects/ as they are, each with errors.json and a reject row, logged once;
    the regular file beside them loads."""
    outside = tmp_path / "outside.csv"
    outside.write_text("article_id,name\nSECRET,not for syncd\n")
    inbox = host / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "articles-link.csv").symlink_to(outside)
    os.mkfifo(inbox / "stock.csv")
    (inbox / "orders.jsonl").mkdir()
    for name in ("articles-link.csv", "stock.csv", "orders.jsonl"):
        settle(inbox / name)
    drop(host, "articles.csv", "article_id,name\nA1,Oats\n")
    with capture_logs() as logs:
        results = load(db, host)
        assert load(db, host) == []
    statuses = {r.file: r.status for r in results}
    assert statuses == {
        "articles-link.csv": "not_a_file",
        "stock.csv": "not_a_file",
        "orders.jsonl": "not_a_file",
        "articles.csv": "archived",
    }
    rejected = host / "rejects"
    assert (rejected / "articles-link.csv").is_symlink()
    assert (rejected / "orders.jsonl").is_dir()
    assert outside.read_text().startswith("article_id")  # untouched, never read
    assert db.scalar("SELECT count(*) FROM host_articles WHERE article_id = 'SECRET'") == 0
    report = json.loads((rejected / "articles-link.csv.errors.json").read_text())
    assert "symlink" in report["reason"]
    assert str(outside) in report["reason"]
    assert "FIFO" in rejects(db)["stock.csv"]["reason"]
    assert "directory" in rejects(db)["orders.jsonl"]["reason"]
    alerts = db.open_alerts(inbox_module.ALERT_FILE_REFUSED)
    assert sorted(a["subject"] for a in alerts) == ["articles", "orders", "stock"]
    warned = [e for e in logs if e["event"] == "host_inbox_entry_not_a_file"]
    assert sorted(e["file"] for e in warned) == ["articles-link.csv", "orders.jsonl", "stock.csv"]


def test_a_cut_off_byte_order_mark_is_not_read_as_an_empty_file(db: Store, host: Path) -> None:
    """One or two bytes of a UTF-8 BOM (a file cut short) are refused as not UTF-8, not
    loaded as an empty file (Python's reader would see no text at all)."""
    drop(host, "stock.jsonl", b"\xef\xbb")
    [result] = load(db, host)
    assert result.status == "rejected_file"
    assert "byte order mark" in (result.reason or "")


def test_a_file_that_cannot_be_read_at_all_raises_an_alert(db: Store, host: Path) -> None:
    """A file refused whole (here Latin-1, not UTF-8) is in rejects/ and raises one alert
    per feed, refreshed (not repeated) by the next such file."""
    drop(host, "articles-1.csv", "article_id,name\nA1,Crème\n".encode("latin-1"))
    drop(host, "articles-2.csv", "article_id,nom\nA1,Oats\n")
    first, second = load(db, host)
    assert (first.status, second.status) == ("rejected_file", "rejected_file")
    [alert] = db.open_alerts(inbox_module.ALERT_FILE_REFUSED)
    assert alert["subject"] == "articles"
    assert alert["count"] == 2
    assert "articles-2.csv" in alert["message"]


# -- what real exports look like: the operator is told what to change --------------------


def _refusal(db: Store, name: str) -> str:
    [row] = [r for ref, r in rejects(db).items() if ref == name]
    return str(row["reason"])


@pytest.mark.parametrize(
    ("content", "line", "hint"),
    [
        # Windows-1252 'é' on line 4; line 2 ends with a lone CR, line 3 is UTF-8.
        (b"article_id,name\r\nA1,Cafe\rA0,Caf\xc3\xa9\r\nA2,Th\xe9\r\n", 4, "Windows-1252"),
        ("article_id,name\nA1,Café\n".encode("utf-16"), 1, "UTF-16"),
        # Cut inside a two-byte character at the very end.
        (b"article_id,name\nA1,Caf\xc3", 2, "save the file"),
    ],
    ids=["windows-1252", "utf-16", "cut-character"],
)
def test_a_file_that_is_not_utf8_is_refused_naming_the_line_and_the_likely_encoding(
    db: Store, host: Path, content: bytes, line: int, hint: str
) -> None:
    """A Windows-1252 or UTF-16 export is refused whole, and the reason says on which line
    the first byte that is not UTF-8 stands and what the file probably is."""
    drop(host, "articles-export.csv", content)
    [result] = load(db, host)
    assert result.status == "rejected_file"
    reason = _refusal(db, "articles-export.csv")
    assert f"line {line}: byte 0x" in reason, reason
    assert hint in reason
    assert "save the file as UTF-8" in reason
    report = json.loads((host / "rejects" / "articles-export.csv.errors.json").read_text())
    assert report["details"]["line"] == line


@pytest.mark.parametrize(
    ("header", "hint"),
    [
        ("\ufeffarticle_id;qty\r\nA1;5\r\n", "holds no ',' but ';'"),
        ("article_id\tqty\nA1\t5\n", "holds no ',' but tab"),
        ("article_id , Qty \nA1,5\n", "rename 'Qty' -> 'qty'"),
        ("article_id,qty,\nA1,5,\n", "a ',' at the end of the header"),
    ],
    ids=["excel-semicolons", "tabs", "capitalised", "trailing-comma"],
)
def test_a_header_in_another_dialect_is_refused_saying_what_to_change(
    db: Store, host: Path, header: str, hint: str
) -> None:
    """An Excel CSV with ';' separators (and a BOM), a tab export, or a capitalised column
    name is refused whole with the change to make, and a good file after it loads."""
    drop(host, "stock-1.csv", header)
    drop(host, "locations-2.csv", "location_id,name\nW1,One\n")
    results = {r.file: r for r in load(db, host)}
    assert results["stock-1.csv"].status == "rejected_file"
    assert hint in _refusal(db, "stock-1.csv")
    assert (results["locations-2.csv"].status, results["locations-2.csv"].loaded) == (
        "archived",
        1,
    )


def test_a_json_array_given_as_json_lines_says_what_json_lines_is(db: Store, host: Path) -> None:
    """A top-level array (on one line or pretty-printed over several) and a trailing comma
    reject their lines, each naming the JSON Lines shape, and the valid line loads."""
    drop(
        host,
        "stock.jsonl",
        '[{"article_id": "A1", "qty": 1},\n{"article_id": "A2", "qty": 2}]\n'
        '[{"article_id": "A3", "qty": 3}]\n'
        '{"article_id": "A4", "qty": 4},\n'
        '{"article_id": "A5", "qty": 5}\n',
    )
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (1, 4)
    assert set(stock(db)) == {"A5"}
    for line in (1, 2, 3, 4):
        assert (
            "JSON Lines holds one object per line" in rejects(db)[f"stock.jsonl:{line}"]["reason"]
        )


def test_a_key_given_twice_with_other_values_rejects_the_row_the_later_one_replaced(
    db: Store, host: Path
) -> None:
    """A stock export that lists an article twice (per bin, with the location column left
    out): the last row of a key loads, as before, but the earlier row with another
    quantity is a reject naming the line that replaced it, not counted as loaded while
    its value silently vanished. A repeat with the same value (`1` and `1.0`) is no
    conflict, and a later file still replaces the row as a snapshot should."""
    drop(host, "stock-1.csv", "article_id,qty\nA1,5\nA1,6\nA2,1\nA2,1.0\nA3,1\n")
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (4, 1)
    assert stock(db) == {"A1": 6, "A2": 1, "A3": 1}
    bad = rejects(db)["stock-1.csv:2"]
    assert bad["field"] == "article_id,location"
    assert bad["reason"].startswith("superseded by line 3: article_id 'A1'")
    assert json.loads(bad["payload"])["qty"] == "5"
    [loaded] = db.query("SELECT rows_loaded, rows_rejected FROM host_files")
    assert (loaded["rows_loaded"], loaded["rows_rejected"]) == (4, 1)
    same = '{"article_id": "A1", "qty": 7}\n'
    drop(host, "stock-2.jsonl", same + same + '{"article_id": "A2", "qty": 2}\n')
    drop(host, "stock-3.csv", "article_id,qty\nA1,8\nA2,2\nA3,3\n")
    results = load(db, host)
    assert [(r.loaded, r.rejected) for r in results] == [(3, 0), (3, 0)]
    assert stock(db) == {"A1": 8, "A2": 2, "A3": 3}


def test_a_file_renamed_while_it_is_read_loads_once_under_its_new_name(
    db: Store, host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host renames a file while syncd reads it: nothing of the half-read file is
    stored (no rows, no rejects, no load record), and the next scan loads the file whole
    under its new name, every line accounted for once."""
    path = drop(host, "stock-1.csv", "article_id,qty\nA1,1\nA2,x\nA3,3\n")
    renamed = host / "inbox" / "stock-renamed.csv"
    real = inbox_module.read_rows

    def rename_midway(*args: Any) -> Any:
        for number, row in enumerate(real(*args)):
            if number == 1:
                os.replace(path, renamed)
            yield row

    monkeypatch.setattr(inbox_module, "read_rows", rename_midway)
    [result] = load(db, host)
    assert result.status == "vanished"
    assert stock(db) == {}
    assert rejects(db) == {}
    assert db.query("SELECT * FROM host_files") == []
    monkeypatch.setattr(inbox_module, "read_rows", real)
    settle(renamed)
    [again] = load(db, host)
    assert (again.file, again.status, again.loaded, again.rejected) == (
        "stock-renamed.csv",
        "archived",
        2,
        1,
    )
    assert set(rejects(db)) == {"stock-renamed.csv:3"}


def test_a_spreadsheets_empty_rows_are_blank_lines_not_rejects(db: Store, host: Path) -> None:
    """Excel writes an empty row as `,,,`: like a blank line it is no data (no reject that
    says every column is required), while a row with one cell filled is judged."""
    drop(
        host,
        "stock.csv",
        "article_id,location,qty\r\nA1,,1\r\n,,\r\n , ,\r\n,,5\r\nA2,,2\r\n,,\r\n",
    )
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (2, 1)
    assert set(rejects(db)) == {"stock.csv:5"}


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("stock.csv", b"article_id,qty\nA1,1\nA2,2\n" + b"\x00" * 4096),
        (
            "stock.jsonl",
            b'{"article_id": "A1", "qty": 1}\n{"article_id": "A2", "qty": 2}\n' + b"\x00" * 99,
        ),
    ],
    ids=["csv", "jsonl"],
)
def test_a_nul_filled_tail_is_one_reject_that_says_what_it_looks_like(
    db: Store, host: Path, name: str, content: bytes
) -> None:
    """A file whose end is NUL bytes (blocks allocated, never written: a crash or a full disk
    while the host wrote it) loads its rows; the NUL line is one reject saying what it
    probably is."""
    drop(host, name, content)
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (2, 1)
    [bad] = rejects(db).values()
    assert bad["reference"] == f"{name}:{4 if name.endswith('.csv') else 3}"
    assert "NUL bytes" in bad["reason"]


def test_a_header_repeated_inside_the_file_is_a_reject_not_an_article(
    db: Store, host: Path
) -> None:
    """Two exports joined into one file (the second with its BOM): the repeated header is
    rejected as such, where it loaded as an article "article_id" named "name"."""
    drop(host, "articles.csv", "article_id,name\nA1,One\n\ufeffarticle_id,name\nA2,Two\n")
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (2, 1)
    assert {r["article_id"] for r in db.query("SELECT article_id FROM host_articles")} == {
        "A1",
        "A2",
    }
    assert "header row again" in rejects(db)["articles.csv:3"]["reason"]


def test_a_csv_order_repeating_a_line_id_is_held_back_not_loaded_with_the_last_row(
    db: Store, host: Path
) -> None:
    """A CSV order giving line L1 twice (qty 5, then 3) loaded the last row as if the first
    were never there, and counted both as loaded. The repeated row is rejected naming the
    first, the order is held back whole (as a JSON Lines record repeating a line id is
    refused), and the order beside it loads."""
    drop(
        host,
        "orders-1.csv",
        "action,order_id,line_id,article_id,qty\n"
        "create,O1,L1,A1,5\ncreate,O1,L2,A2,1\ncreate,O1,L1,A1,3\ncreate,O2,L1,A1,1\n",
    )
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (1, 3)
    assert [r["order_id"] for r in db.query("SELECT order_id FROM host_orders")] == ["O2"]
    found = rejects(db)
    assert set(found) == {"orders-1.csv:2", "orders-1.csv:3", "orders-1.csv:4"}
    assert found["orders-1.csv:4"]["field"] == "line_id"
    assert "given again (first on line 2)" in found["orders-1.csv:4"]["reason"]
    assert "held back" in found["orders-1.csv:2"]["reason"]


def test_a_csv_purchase_order_repeating_a_line_no_is_held_back(db: Store, host: Path) -> None:
    """Likewise for purchase orders: line 1 of P1 given twice (10, then 20) is rejected
    naming the first, P1 is held back whole, P2 loads."""
    drop(
        host,
        "purchase_orders-1.csv",
        "po_number,supplier_id,order_date,line_no,article_id,qty_ordered\n"
        "P1,S1,2026-11-02,1,A1,10\nP1,S1,2026-11-02,1,A1,20\nP2,S1,2026-11-02,1,A1,5\n",
    )
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (1, 2)
    po_lines = db.query("SELECT po_number, qty_ordered FROM host_purchase_order_lines")
    assert [(r["po_number"], r["qty_ordered"]) for r in po_lines] == [("P2", 5)]
    found = rejects(db)
    assert "given again (first on line 2)" in found["purchase_orders-1.csv:3"]["reason"]
    assert "held back" in found["purchase_orders-1.csv:2"]["reason"]


def test_a_file_removed_between_the_listing_and_its_stat_is_skipped_and_the_rest_load(
    db: Store, host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host may delete a file while syncd lists the inbox: that file is simply not
    there to load, and the other files of the run still load (the stat raised
    FileNotFoundError out of the scan and ended the whole inbox run)."""
    drop(host, "stock-1.csv", "article_id,qty\nA1,1\n")
    drop(host, "articles.csv", "article_id,name\nA1,Oats\n")
    real_scandir = os.scandir
    listings = []

    class ListedThenRemoved:
        """os.scandir whose second listing (the scan for regular files, after the one for
        strays) is taken just before the host removes stock-1.csv."""

        def __init__(self, path: Any) -> None:
            with real_scandir(path) as it:
                self.entries = list(it)
            listings.append([e.name for e in self.entries])
            if len(listings) == 2:
                (Path(path) / "stock-1.csv").unlink()

        def __enter__(self) -> list[os.DirEntry[str]]:
            return self.entries

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(inbox_module.os, "scandir", ListedThenRemoved)
    results = load(db, host)
    assert "stock-1.csv" in listings[1]
    assert [(r.file, r.status) for r in results] == [("articles.csv", "archived")]
