"""`syncd rejects list` pages and filters; `retry` and `drop` take the same filters for
bulk work, counted and confirmed at a terminal (in-process CLI on a real state DB)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from freezegun import freeze_time

from syncd import cli
from syncd.cli import main
from syncd.state import Store
from syncd.state.store import NewIntent, NewReject
from tests.unit.test_cli_exits import clean_env

HOST, OUTBOX = 159, 12  # host rows, refused Instock pushes


def invoke(config: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner(env=clean_env()).invoke(main, [*args, "--config", str(config)], input=stdin)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """159 host rows rejected by a host.inbox run on 1 Dec, then 12 Instock pushes refused
    by an outbox.send run on 3 Dec."""
    path = tmp_path / "syncd.toml"
    path.write_text(f"[daemon]\nstate_dir = {json.dumps(str(tmp_path / 'state'))}\n")
    with Store.open(tmp_path / "state" / "syncd.db") as store:
        with freeze_time("2026-12-01T08:00:00Z"):
            store.start_run("host.inbox", "host-inbox-0123456789ab", "schedule")
            store.add_rejects(
                [
                    NewReject("host:articles", f"articles.csv:{n + 2}", "qty: not a number")
                    for n in range(HOST)
                ],
                run_id="host-inbox-0123456789ab",
            )
        with freeze_time("2026-12-03T08:00:00Z"):
            store.add_intents(
                [
                    NewIntent("instock", "create", f"o{n}", f"k{n}", {"id": f"o{n}"})
                    for n in range(OUTBOX)
                ]
            )
            for intent in store.pending_intents("instock", OUTBOX):
                store.reject_intent(intent, "bad_request: No such Article")
    return path


def listed(config: Path, *args: str) -> list[dict[str, object]]:
    result = invoke(config, "rejects", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_list_says_how_many_there_are_and_how_to_see_more(config: Path) -> None:
    """The first page of 100 says it is 100 of 171 and names the option for the next;
    the last page says where the previous one starts; a page that shows all says nothing."""
    first = invoke(config, "rejects", "list")
    assert first.exit_code == 0, first.output
    assert "showing 1-100 of 171; --offset 100 for the next 71, --limit 171 for all" in (
        first.output
    )
    assert first.output.count("articles.csv:") == 100
    last = invoke(config, "rejects", "list", "--offset", "100")
    assert "showing 101-171 of 171; --offset 0 for the previous" in last.output
    whole = invoke(config, "rejects", "list", "--limit", "500")
    assert "showing" not in whole.output
    assert len(whole.output.splitlines()) == 1 + HOST + OUTBOX


def test_list_json_is_the_rows_and_the_count_goes_to_stderr(config: Path) -> None:
    """--json prints only the page's rows on stdout; the count line is on stderr."""
    result = invoke(config, "rejects", "list", "--json", "--limit", "10", "--offset", "5")
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == list(range(6, 16))
    assert "showing 6-15 of 171" in result.stderr


def test_list_filters(config: Path) -> None:
    """--job, --source, --reason (any case) and --since select rejects, and combine."""
    assert len(listed(config, "--limit", "500", "--job", "host.inbox")) == HOST
    assert len(listed(config, "--limit", "500", "--source", "outbox:")) == OUTBOX
    assert len(listed(config, "--limit", "500", "--reason", "no such article")) == OUTBOX
    assert len(listed(config, "--limit", "500", "--since", "2026-12-02")) == OUTBOX
    assert len(listed(config, "--limit", "500", "--since", "2026-12-01T07:00:00+01:00")) == (
        HOST + OUTBOX
    )
    assert listed(config, "--job", "host.inbox", "--source", "outbox:") == []
    with freeze_time("2026-12-03T09:00:00Z"):
        assert len(listed(config, "--limit", "500", "--since", "2h")) == OUTBOX
    assert listed(config, "--source", "host%") == []  # a prefix, not a LIKE pattern
    assert invoke(config, "rejects", "list", "--job", "no.such").exit_code == 64
    assert invoke(config, "rejects", "list", "--since", "last week").exit_code == 64


def test_bulk_drop_asks_at_a_terminal_with_the_count(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a terminal, a drop by filter says how many and asks; no changes nothing (1);
    yes drops exactly those, and --yes does not ask."""
    monkeypatch.setattr(cli.rejects, "_interactive", lambda: True)
    declined = invoke(config, "rejects", "drop", "--job", "host.inbox", stdin="n\n")
    assert declined.exit_code == 1
    assert f"Drop {HOST} reject(s)?" in declined.output
    assert len(listed(config, "--limit", "500")) == HOST + OUTBOX
    accepted = invoke(config, "rejects", "drop", "--job", "host.inbox", stdin="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert f"{HOST} dropped" in accepted.output
    assert len(listed(config, "--limit", "500")) == OUTBOX
    assert len(listed(config, "--limit", "500", "--status", "dropped")) == HOST
    quiet = invoke(config, "rejects", "drop", "--reason", "article", "--yes")
    assert "reject(s)?" not in quiet.output
    assert f"{OUTBOX} dropped" in quiet.output


def test_bulk_retry_requeues_pushes_and_leaves_host_rows_out(config: Path) -> None:
    """Off a terminal a retry by filter runs without asking: refused pushes are queued
    again and host rows (fixed at the source) are left out, counted."""
    result = invoke(config, "rejects", "retry", "--all")
    assert result.exit_code == 0, result.output
    assert (
        f"{OUTBOX} queued for sending again, 0 flagged for their job's next run; "
        f"{HOST} host row(s) left out" in result.output
    )
    assert len(listed(config, "--limit", "500", "--status", "retried")) == OUTBOX
    assert len(listed(config, "--limit", "500")) == HOST


def test_ids_still_work_and_ids_with_filters_are_refused(config: Path) -> None:
    """Rejects named by id are acted on one by one as before; ids and filters together,
    or neither, are usage errors (64); every named id is tried even when one fails."""
    dropped = invoke(config, "rejects", "drop", "1", "2")
    assert dropped.exit_code == 0, dropped.output
    assert "reject 1: dropped\nreject 2: dropped" in dropped.output
    assert invoke(config, "rejects", "drop", "3", "--job", "host.inbox").exit_code == 64
    assert invoke(config, "rejects", "retry").exit_code == 64
    mixed = invoke(config, "rejects", "retry", "999", str(HOST + 1))
    assert mixed.exit_code == 66, mixed.output
    assert f"reject {HOST + 1}: queued for sending again" in mixed.output


def test_outbox_list_pages_the_same_way(config: Path) -> None:
    """`outbox list` says how many intents match and how to see the next page."""
    result = invoke(config, "outbox", "list", "--status", "rejected", "--limit", "5")
    assert result.exit_code == 0, result.output
    assert f"showing 1-5 of {OUTBOX}; --offset 5 for the next 5, --limit {OUTBOX} for all" in (
        result.output
    )
    rest = invoke(config, "outbox", "list", "--status", "rejected", "--offset", "10", "--json")
    assert len(json.loads(rest.stdout)) == OUTBOX - 10
    assert f"showing 11-{OUTBOX} of {OUTBOX}" in rest.stderr
