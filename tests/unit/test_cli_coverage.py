"""`syncd coverage` reads the window ledger of a real state DB: per stream its period and
every gap with its cause, exit 0 without a gap and 1 with one (in-process CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from freezegun import freeze_time

from syncd.cli import main
from syncd.state import Store
from syncd.state.windows import MAX_REQUEST_IDS, RecordWindow, window_counts
from tests.unit.test_cli_exits import clean_env


def invoke(config: Path, *args: str) -> Result:
    return CliRunner(env=clean_env()).invoke(main, [*args, "--config", str(config)])


def moves(run_id: str, start: str, end: str, *, at: str) -> RecordWindow:
    return RecordWindow(
        "instock.moves", "instock.moves", run_id, "window", at, at, start, end, lag_s=60,
        overlap_s=600, listed=3, stored=3, request_ids=("req-1",),
    )  # fmt: skip


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """instock.moves: two overlapping windows, a failed run, then a window after a reset
    checkpoint; instock.orders: a clean cursor walk."""
    path = tmp_path / "syncd.toml"
    path.write_text(f"[daemon]\nstate_dir = {json.dumps(str(tmp_path / 'state'))}\n")
    with Store.open(tmp_path / "state" / "syncd.db") as store, store.transaction():
        for change in (
            moves("m1", "2026-12-01T08:00:00.000Z", "2026-12-01T09:00:00.000Z", at="2026-12-01T09:01:00.000Z"),
            moves("m2", "2026-12-01T08:50:00.000Z", "2026-12-01T10:00:00.000Z", at="2026-12-01T10:01:00.000Z"),
            moves("m4", "2026-12-01T12:00:00.000Z", "2026-12-01T13:00:00.000Z", at="2026-12-01T13:01:00.000Z"),
            RecordWindow("instock.orders", "instock.orders", "o1", "cursor",
                         "2026-12-01T09:00:00.000Z", "2026-12-01T09:00:01.000Z", cursor_before="", cursor_after="c1"),
            RecordWindow("instock.orders", "instock.orders", "o2", "cursor",
                         "2026-12-01T09:02:00.000Z", "2026-12-01T09:02:01.000Z", cursor_before="c1", cursor_after="c1"),
        ):  # fmt: skip
            change.apply(store)
        with freeze_time("2026-12-01T11:00:00Z"):
            store.start_run("instock.moves", "m3", "schedule")
            store.finish_run("m3", "failed", {}, error="timeout")
    return path


def test_text_names_each_gap_and_exits_1(config: Path) -> None:
    """The gap between 10:00 and 12:00 is reported with the failed run, exit 1."""
    result = invoke(config, "coverage")
    assert result.exit_code == 1, result.output
    assert "instock.moves (window, 3 rows)" in result.stdout
    assert "1 gap(s)" in result.stdout
    assert (
        "gap 2026-12-01T10:00:00.000Z .. 2026-12-01T12:00:00.000Z (2:00:00): failed-run (runs m3)"
        in result.stdout
    )
    assert "overlap: configured 600 s, least seen 600 s" in result.stdout
    assert "instock.orders (cursor, 2 rows)" in result.stdout


def test_json_and_one_stream_without_a_gap_exits_0(config: Path) -> None:
    result = invoke(config, "coverage", "instock.orders", "--json")
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)
    assert report["stream"] == "instock.orders"
    assert report["gaps"] == []


def test_since_after_the_gap_exits_0(config: Path) -> None:
    result = invoke(
        config, "coverage", "instock.moves", "--since", "2026-12-01T12:00:00Z", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["from"] == "2026-12-01T12:00:00.000Z"


def test_an_unknown_stream_is_named(config: Path) -> None:
    result = invoke(config, "coverage", "nope")
    assert result.exit_code == 66
    assert "no ledger rows for stream 'nope'" in result.output


def test_request_ids_are_bounded(tmp_path: Path) -> None:
    """A window of many pages keeps the first request ids and counts the rest."""
    with Store.open(tmp_path / "syncd.db") as store:
        ids = tuple(f"req-{n}" for n in range(MAX_REQUEST_IDS + 5))
        RecordWindow("s", "j", "r", "window", "t", "t", request_ids=ids).apply(store)
        [row] = window_counts(store, "s")
    assert json.loads(row["request_ids"]) == list(ids[:MAX_REQUEST_IDS])
    assert row["request_ids_more"] == 5


def test_a_scan_stream_lists_its_scans(tmp_path: Path) -> None:
    """instock.inventory: twelve scans 15 minutes apart are no gap; the text lists the last
    ten with their pages, counts and hash and says how many earlier ones --json has;
    --json has every scan with its number, request ids and hash."""
    path = tmp_path / "syncd.toml"
    path.write_text(f"[daemon]\nstate_dir = {json.dumps(str(tmp_path / 'state'))}\n")
    with Store.open(tmp_path / "state" / "syncd.db") as store, store.transaction():
        for n in range(1, 13):
            start, end = f"2026-12-01T{8 + n // 4:02d}:{(n % 4) * 15:02d}:00.000Z", None
            end = start.replace(":00.000Z", ":40.000Z")
            RecordWindow(
                "instock.inventory", "instock.inventory", f"i{n}", "scan", start, end,
                start, end, pages=3, listed=25, stored=24, rejected=1,
                content_hash=f"h{n:031d}", request_ids=(f"r{n}a", f"r{n}b", f"r{n}c"), scan=n,
            ).apply(store)  # fmt: skip
    result = invoke(path, "coverage", "instock.inventory")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("instock.inventory (scan, 12 rows): ")
    assert lines[0].endswith(": no gap")
    assert lines[1] == "  (2 earlier scan(s): see --json)"
    assert lines[2] == (
        "  scan 3 2026-12-01T08:45:00.000Z .. 2026-12-01T08:45:40.000Z (0:00:40): 3 pages, "
        f"25 listed, 24 stored, 1 rejected, hash h{3:031d}"
    )
    assert len(lines) == 12
    result = invoke(path, "coverage", "instock.inventory", "--json")
    [stream] = json.loads(result.stdout)
    assert [s["scan"] for s in stream["scans"]] == list(range(1, 13))
    assert stream["scans"][0]["request_ids"] == ["r1a", "r1b", "r1c"]
    assert stream["gaps"] == []
