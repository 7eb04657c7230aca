"""Benchmark: what the scan ledger costs instock.inventory per page, without HTTP.

The pull benchmark (bench/instock_pull.py --before) compares whole processes against a
simulator; on a shared, loaded machine its rounds spread by +-15%, too wide to see a cost
of a few percent. This one times only the job's storing thread: `--pages` pages of
`--page-size` generated inventory records, stored by `instock_inventory.apply_page` into
a fresh state DB (validation, the mirror and deltas SQL, the commit), once with the scan
tally and once with `tally_page` replaced by a no-op, alternating, `--rounds` times. It
prints the CPU seconds (`time.process_time`) per round of each side, the minimum (the run
least disturbed by other work) and the ratio of the minimums, with the load average.

    python bench/inventory_page_cost.py [--pages 200] [--page-size 1000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rounds import machine_load

from syncd.config import Settings
from syncd.connectors.instock import Page
from syncd.jobs import instock_inventory as job
from syncd.jobs.base import JobContext
from syncd.state import Store


def pages(count: int, size: int, seed: int = 3) -> list[Page]:
    rng = random.Random(seed)
    out = []
    for n in range(count):
        items = [
            {
                "article_id": str(10**11 + n * size + i),
                "qty": {"free": rng.randrange(200), "reserved": rng.randrange(5), "registered": 0},
            }
            for i in range(size)
        ]
        out.append(Page(items, f"c{n + 1}", n + 1 < count, {}, f"{n:032x}"))
    return out


def store_all(tmp: Path, tag: str, listed: list[Page], tally: bool) -> float:
    """CPU seconds to store every page as the job does (one transaction per page)."""
    store = Store.open(tmp / f"{tag}.db")
    ctx = JobContext(
        "instock.inventory", f"bench-{tag}", Settings(), store, logging.getLogger("bench")
    )  # type: ignore[arg-type]
    original = job.tally_page
    if not tally:
        job.tally_page = lambda t, *_a, **_k: t  # type: ignore[assignment]
    try:
        job.mirror.open_page_table(store)
        position = job.Position()
        started = time.process_time()
        for page in listed:
            position = job.apply_page(ctx, position, page)
        return time.process_time() - started
    finally:
        job.tally_page = original
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    listed = pages(args.pages, args.page_size)
    rows = args.pages * args.page_size
    print(f"{rows:,} records in {args.pages} pages; {machine_load()}")
    seconds: dict[str, list[float]] = {"ledger": [], "no ledger": []}
    with tempfile.TemporaryDirectory(prefix="syncd-pagecost-") as tmp:
        store_all(Path(tmp), "warm", listed[:20], True)  # imports, page cache
        for n in range(args.rounds):
            order = ["ledger", "no ledger"] if n % 2 == 0 else ["no ledger", "ledger"]
            for side in order:
                seconds[side].append(
                    store_all(Path(tmp), f"{side[:2]}{n}", listed, side == "ledger")
                )
            print(
                f"round {n + 1}: ledger {seconds['ledger'][-1]:.2f} s, "
                f"no ledger {seconds['no ledger'][-1]:.2f} s CPU",
                flush=True,
            )
    best: dict[str, Any] = {k: min(v) for k, v in seconds.items()}
    print(
        f"-- min of {args.rounds}: ledger {best['ledger']:.3f} s, no ledger "
        f"{best['no ledger']:.3f} s CPU for {rows:,} rows: x{best['ledger'] / best['no ledger']:.3f} "
        f"(target <= 1.05); {machine_load()}"
    )


if __name__ == "__main__":
    main()
