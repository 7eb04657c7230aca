"""Long jobs report their progress through `ctx.progress` alone (run in-process against the
Instock simulator over loopback, real state files): what `syncd once` draws at a terminal
comes from these reports, never from reading a job's internals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import syncd.jobs  # noqa: F401 - fills the job registry
from syncd.config import Settings
from syncd.sandbox.instock import InstockSim
from tests.configs import FAST_BACKOFF, connector_for, fast_retry, sim_settings
from tests.integration.jobkit import csv_text, drop, run

ARTICLES = 250


class Recorder:
    """A progress hook that keeps every report."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, int, int | None]] = []

    def __call__(self, stage: str, done: int, total: int | None = None) -> None:
        self.reports.append((stage, done, total))

    def of(self, prefix: str) -> list[tuple[int, int | None]]:
        return [(d, t) for s, d, t in self.reports if s.startswith(prefix)]


@pytest.fixture
def sim() -> Iterator[InstockSim]:
    with InstockSim(seed=5, articles=ARTICLES, retry_after=0) as running:
        yield running


@pytest.fixture
def cfg(sim: InstockSim, tmp_path: Path) -> Settings:
    return sim_settings(
        tmp_path,
        connector_for(sim, page_size=100, retry=fast_retry(4)),
        outbox=FAST_BACKOFF,
        jobs={"instock.articles": {"options": {"batch_size": 40, "bootstrap": False}}},
    )


def test_inventory_scan_reports_records_read_page_by_page(cfg: Settings) -> None:
    """Each page of the inventory list adds its records, up to every record listed."""
    seen = Recorder()
    pulled = run(cfg, "instock.inventory", progress=seen).counts["pulled"]
    done = [d for d, _ in seen.of("instock.inventory: stock records read")]
    assert pulled > 200
    assert done == sorted(done)
    assert len(done) == 3  # 100 records a page
    assert done[-1] == pulled


def test_article_planning_and_upload_report_against_their_totals(cfg: Settings) -> None:
    """instock.articles counts host articles planned against the catalog's size, batch by
    batch; outbox.send counts the instock intents gone through against those pending."""
    rows = [f"N{n:04d},New article {n},10,20,30,cm" for n in range(100)]
    drop(cfg, "articles", csv_text("article_id,name,dim_x,dim_y,dim_z,dim_uom", rows))
    planned = Recorder()
    queued = run(cfg, "instock.articles", progress=planned).counts["queued"]
    assert planned.of("instock.articles: host articles planned") == [
        (40, 100),
        (80, 100),
        (100, 100),
    ]
    sent = Recorder()
    run(cfg, "outbox.send", progress=sent)
    drained = sent.of("outbox.send: instock pending intents gone through")
    assert drained[-1] == (queued, queued)
    assert [d for d, _ in drained] == list(range(1, queued + 1))


def test_without_a_hook_nothing_is_reported_or_counted(cfg: Settings) -> None:
    """The default hook (the daemon's) makes a run exactly as before: same counts."""
    quiet = run(cfg, "instock.inventory").counts
    loud = run(cfg, "instock.inventory", progress=Recorder()).counts
    assert quiet["pulled"] == loud["pulled"] > 200
