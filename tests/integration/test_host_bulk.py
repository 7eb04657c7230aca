"""Host inbox at scale: memory stays flat however many rows a file has.

Marked slow: each loads tens of thousands of rows into a real SQLite file (one in a child
interpreter); the full test command runs them, `-m "not slow"` leaves them out.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from syncd.host import FEEDS, FeedOptions, load_file
from syncd.state import Store

pytestmark = pytest.mark.slow

HEADER = "article_id,name,unit,whole_units,is_serial_numbered,dim_x,dim_y,dim_z,dim_uom,attr.upc\n"


def write_articles(path: Path, rows: int) -> None:
    """Stream a realistic articles CSV to disk (never held in memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(HEADER)
        for i in range(rows):
            fh.write(
                f"ART{i:08d},Article number {i},EA,true,false,{i % 50 + 1}.25,12,2.75,in,0{i:011d}\n"
            )


# Run in a fresh interpreter and sample its resident set while it loads. RSS,
# unlike tracemalloc, also counts SQLite's page cache and pydantic-core's
# allocations. (ru_maxrss is a lifetime high-water mark, so it cannot show growth.)
CHILD = """
import json, os, sys, threading, time
from pathlib import Path
from syncd.host import FEEDS, FeedOptions, load_file
from syncd.state import Store

PAGE = os.sysconf("SC_PAGE_SIZE")

def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE

path, db = Path(sys.argv[1]), Path(sys.argv[2])
store = Store.open(db)
baseline = peak = rss()
done = threading.Event()

def sample():
    global peak
    while not done.wait(0.02):
        peak = max(peak, rss())

sampler = threading.Thread(target=sample)
sampler.start()
started = time.monotonic()
result = load_file(store, FEEDS["articles"], path, FeedOptions(mode="snapshot"), "bulk")
elapsed = time.monotonic() - started
done.set()
sampler.join()
peak = max(peak, rss())
print(json.dumps({"loaded": result.loaded, "rejected": result.rejected, "status": result.status,
                  "seconds": elapsed, "baseline_mib": baseline / 2**20,
                  "rss_growth_mib": (peak - baseline) / 2**20}))
"""


def _load_in_child(tmp_path: Path, rows: int) -> dict:
    path = tmp_path / f"r{rows}" / "host" / "inbox" / "articles-big.csv"
    write_articles(path, rows)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(tmp_path / f"r{rows}.db")],
        capture_output=True,
        text=True,
        check=True,
        timeout=110,
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert (figures["status"], figures["loaded"], figures["rejected"]) == ("archived", rows, 0)
    with Store.open(tmp_path / f"r{rows}.db") as store:
        assert store.scalar("SELECT count(*) FROM host_articles") == rows
    return figures


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_resident_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    """Five times the rows, the same resident growth: a 250,000-row snapshot loads whole
    while the process grows no more than 20 MiB beyond what 50,000 rows took (holding
    the rows would take ~1 KB each, ~200 MiB more). The 1,000,000-row figure and the
    rows/s against a raw loop are in bench/host_load.py."""
    small = _load_in_child(tmp_path, 50_000)
    large = _load_in_child(tmp_path, 250_000)
    print(
        f"RSS growth: 50k rows {small['rss_growth_mib']:.1f} MiB, "
        f"250k rows {large['rss_growth_mib']:.1f} MiB ({large['seconds']:.1f}s)"
    )
    assert large["rss_growth_mib"] < 100
    assert large["rss_growth_mib"] - small["rss_growth_mib"] < 20


def test_python_heap_peak_is_bounded_by_the_batch_not_the_file(tmp_path: Path) -> None:
    """tracemalloc's peak while loading 60,000 rows stays under 30 MiB (holding the file's
    rows as Python objects would take ~60 MB; measured: 13 MiB at 20k rows and at 60k):
    rows are streamed and staged in batches of 5,000 (tracemalloc slows parsing ~5x,
    hence a smaller file here)."""
    path = tmp_path / "host" / "inbox" / "articles-big.csv"
    write_articles(path, 60_000)
    with Store.open(tmp_path / "s.db") as store:
        tracemalloc.start()
        try:
            started = time.monotonic()
            result = load_file(store, FEEDS["articles"], path, FeedOptions(mode="snapshot"), "bulk")
            elapsed = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        print(f"60k rows under tracemalloc: {elapsed:.1f}s, peak {peak / 2**20:.1f} MiB")
        assert result.loaded == 60_000
        assert peak < 30 * 2**20
