"""Benchmark: the CPU an unchanged `dsorder.pull` costs (target: < 50 ms for
1,000 orders).

In one process: a DSOrder simulator with N orders of L lines submitted today, an Instock
simulator (the job's second connector; not called by the pull), a host catalog holding
every article (so each order is created, not held), and a fresh state DB. The first pull
stores and plans every order; then `--rounds` pulls of the same, unchanged, list are timed.

Figures per pull: `time.thread_time()` of the job's thread (the job: request, parse,
decisions, SQLite; the simulator serves from its own threads, so its cost is left out) and
`time.process_time()` (the whole process, the simulator's serving included), as median
and spread (min..max). Timings exclude nothing else; the target applies to the job's own.

    python bench/dsorder_pull.py [--orders 1000] [--lines 10] [--rounds 7]

To compare with an older syncd, run this file with that checkout first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import syncd.jobs  # noqa: F401 - fills the job registry
from syncd.config import Settings
from syncd.jobs import REGISTRY
from syncd.jobs.runner import run_job
from syncd.sandbox.base import ManualClock
from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.instock import InstockSim
from syncd.state import Store

TARGET_MS = 50.0


def settings_for(root: Path, ins: InstockSim, ds: DSOrderSim) -> Settings:
    return Settings(
        daemon={"state_dir": str(root / "state"), "site_timezone": "UTC"},
        connectors={
            "instock": {
                "base_url": ins.base_url,
                "token": ins.token,
                "site_id": ins.site_id,
                "environment": "sandbox",
            },
            "dsorder": {"base_url": ds.base_url, "token": ds.token},
        },
        host={"dir": str(root / "host"), "settle_time": 0},
        logging={"level": "warning"},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the rounds: where one unchanged pull's time goes",
    )
    args = parser.parse_args()
    articles = [f"ART-{n:06d}" for n in range(1, 201)]
    with (
        tempfile.TemporaryDirectory() as tmp,
        InstockSim(seed=1, articles=10) as ins,
        DSOrderSim(seed=1, clock=ManualClock(), tz="UTC") as ds,
    ):
        root = Path(tmp)
        settings = settings_for(root, ins, ds)
        settings.db_path.parent.mkdir(parents=True, exist_ok=True)
        Store.open(settings.db_path).close()
        inbox = root / "host" / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        rows = "".join(f"{a},Article {a},true\n" for a in articles)
        (inbox / "articles-bench.csv").write_text("article_id,name,whole_units\n" + rows)
        assert run_job(REGISTRY["host.inbox"], settings, trigger="bench").status == "ok"
        for i in range(args.orders):
            lines = [(articles[(i + j) % len(articles)], 1 + j) for j in range(args.lines)]
            ds.submit_order(lines=lines)

        def pull() -> tuple[float, float, dict[str, int]]:
            thread, process = time.thread_time(), time.process_time()
            result = run_job(REGISTRY["dsorder.pull"], settings, trigger="bench")
            thread, process = time.thread_time() - thread, time.process_time() - process
            assert result.status == "ok", result.error
            return thread * 1000, process * 1000, result.counts

        first = pull()
        print(
            f"first pull ({args.orders} x {args.lines}): job thread {first[0]:.0f} ms, "
            f"process {first[1]:.0f} ms, counts {first[2]}"
        )
        timed = [pull() for _ in range(args.rounds)]
        print(f"unchanged pull counts: {timed[-1][2]}")
        for name, index in (("job thread", 0), ("process (sim incl.)", 1)):
            values = [t[index] for t in timed]
            print(
                f"unchanged pull CPU, {name}: median {statistics.median(values):.1f} ms "
                f"({min(values):.1f}..{max(values):.1f}, {len(values)} pulls)"
            )
        median = statistics.median(t[0] for t in timed)
        verdict = "met" if median < TARGET_MS else "NOT met"
        print(f"target: job thread < {TARGET_MS:.0f} ms for 1,000 orders: {verdict}")
        if args.profile:  # the job's thread only: the simulator serves from its own
            profile = cProfile.Profile()
            profile.runcall(pull)
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
