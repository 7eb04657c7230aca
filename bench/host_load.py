"""Benchmark: loading a large host articles file, syncd against a raw csv+sqlite loop.

Both run as their own processes on the same generated file, alternating which
goes first (`bench/rounds.py`), after a warm-up round that is not counted (the
first read of a fresh file pays for the page cache). The raw loop is the least a loader can do: `csv.reader`, one
`executemany` upsert per 5,000 rows, one transaction. syncd's `load_file` also
checks every field against the feed's grammar and bounds, records rejects,
hashes the file and applies the snapshot (deletions, mass-delete guard).
Prints rows/s and peak RSS growth per round, then the median and the spread.

    python bench/host_load.py [--rows 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rounds import Figures, interleave, machine_load, ratios, spread_of, warm_up  # noqa: E402

from tests.integration.test_host_bulk import CHILD as SYNCD_CHILD  # noqa: E402
from tests.integration.test_host_bulk import write_articles  # noqa: E402

RAW_CHILD = textwrap.dedent(
    """
    import csv, json, os, sqlite3, sys, threading, time
    PAGE = os.sysconf("SC_PAGE_SIZE")
    def rss():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * PAGE
    path, db = sys.argv[1], sys.argv[2]
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE IF NOT EXISTS a (article_id TEXT PRIMARY KEY, name, unit, "
                "whole_units, serial, dx, dy, dz, uom, upc)")
    baseline = peak = rss()
    done = threading.Event()
    def sample():
        global peak
        while not done.wait(0.02):
            peak = max(peak, rss())
    threading.Thread(target=sample, daemon=True).start()
    started = time.monotonic()
    loaded = 0
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        con.execute("BEGIN")
        batch = []
        for row in reader:
            batch.append(row)
            if len(batch) == 5000:
                con.executemany("INSERT OR REPLACE INTO a VALUES (?,?,?,?,?,?,?,?,?,?)", batch)
                loaded += len(batch)
                batch = []
        con.executemany("INSERT OR REPLACE INTO a VALUES (?,?,?,?,?,?,?,?,?,?)", batch)
        loaded += len(batch)
        con.execute("COMMIT")
    elapsed = time.monotonic() - started
    done.set()
    peak = max(peak, rss())
    print(json.dumps({"loaded": loaded, "seconds": elapsed,
                      "rss_growth_mib": (peak - baseline) / 2**20}))
    """
)


def run(child: str, path: Path, work: Path, tag: str) -> dict:
    db = work / f"{tag}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    # syncd archives the file after loading it: give each round its own copy.
    copy = work / tag / "host" / "inbox" / path.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(path.read_bytes())
    out = subprocess.run(
        [sys.executable, "-c", child, str(copy), str(db)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "articles-big.csv"
        write_articles(path, args.rows)

        def contender(child: str) -> Callable[[str], Figures]:
            def measure(tag: str) -> Figures:
                f = run(child, path, work, tag)
                assert f["loaded"] == args.rows, f
                f["rows_s"] = args.rows / f["seconds"]
                return f

            return measure

        contenders = {"raw": contender(RAW_CHILD), "syncd": contender(SYNCD_CHILD)}
        print(machine_load(), flush=True)
        warm_up(contenders)
        series = interleave(
            contenders,
            args.rounds,
            show=lambda _r, _n, f: (
                f"{f['rows_s']:9,.0f} rows/s ({f['seconds']:.1f} s), "
                f"RSS growth {f['rss_growth_mib']:.1f} MiB"
            ),
        )
        print(f"\n{args.rows:,} rows, median of {args.rounds} rounds (min..max); {machine_load()}:")
        for name in ("raw", "syncd"):
            print(
                f"  {name:5}: {series[name].spread('rows_s')} rows/s, "
                f"RSS growth {series[name].spread('rss_growth_mib', '.1f')} MiB"
            )
        per_round = ratios(series["syncd"], "rows_s", series["raw"], "rows_s")
        print(f"  syncd / raw: {spread_of(per_round)} (per round)")


if __name__ == "__main__":
    main()
