"""Benchmark: what the window ledger and the lineage of pulled records cost the state DB.

One Instock simulator (in this process: `--articles` articles, seed 7) with `--moves`
moves added over the last day. For each contender, this checkout's syncd and the syncd of
git commit `--before` (its source exported with `git archive`, first on PYTHONPATH, as
bench/instock_pull.py does), a fresh state DB takes one full inventory scan
(`syncd once instock.inventory`) and then one pull of the last day's moves
(`syncd once instock.moves`: its first run reads `initial_lookback`, one day). Nothing is
sent, so both DBs hold the same pending host file intents.

Then each DB is checkpointed (WAL truncated) and measured: the file, and per table and
index (SQLite's dbstat) the bytes of its pages; the tables only one side has are named.
Prints both, the ratio after / before (target: <= 1.10), the same without the
outbox (the first scan's pending delta files, the same on both sides and most of the
file) and the load average.
A run repeated gives the same sizes to a few pages: no rounds are needed for a size.

    python bench/ledger_size.py --before REF [--articles 1000000] [--moves 100000]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rounds import machine_load, run_measured

from syncd.sandbox.instock import InstockSim

DAY = 86_400
OUTBOX = ("outbox", "sqlite_autoindex_outbox")  # the outbox table and its indexes


def add_day_of_moves(sim: InstockSim, count: int, seed: int = 11) -> None:
    """`count` moves spread over the last day (older than the pull's lag), storage to port."""
    rng = random.Random(seed)
    now = int(time.time())
    with sim.state.lock:
        articles = sim.state.article_ids
        for n in range(count):
            article = articles[rng.randrange(len(articles))]
            sim.state.add_move(
                sim.site_id,
                article,
                rng.randint(1, 5),
                now - 120 - rng.randrange(DAY - 300),
                user_id=f"robot-{n % 7:02d}",
                order_id=f"B{n // 3:07d}" if n % 4 else None,
                from_cell_id=f"CELL-{rng.randrange(20_000):05d}",
                to_cell_id="PORT-01",
                from_account_id="stock",
                to_account_id="customer",
            )


def write_config(work: Path, sim: InstockSim) -> Path:
    """A config both sides accept (no keys newer than the oldest side may know)."""
    work.mkdir(parents=True)
    config = work / "syncd.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [daemon]
            state_dir = "{work / "state"}"
            [logging]
            level = "warning"
            [host]
            dir = "{work / "host"}"
            [connectors.instock]
            enabled = true
            base_url = "{sim.base_url}"
            token = "{sim.token}"
            site_id = "{sim.site_id}"
            environment = "sandbox"
            page_size = 1000
            [jobs."instock.inventory".options]
            reconcile = false
            """
        )
    )
    return config


def export_commit(ref: str, root: Path) -> Path:
    repo = Path(__file__).resolve().parent.parent
    dest = root / "before-src"
    dest.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", ref, "syncd"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def fill(work: Path, sim: InstockSim, env: dict[str, str] | None) -> Path:
    config = write_config(work, sim)
    for job in ("instock.inventory", "instock.moves"):
        run_measured([sys.executable, "-m", "syncd.cli", "once", job, "--config", str(config)], env)
    return work / "state" / "syncd.db"


def measure(db: Path) -> tuple[int, dict[str, int], dict[str, int]]:
    """(file bytes after a WAL truncate, bytes per table/index, row counts of the tables
    the comparison is about)."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        per = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
        counts = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("instock_inventory", "instock_moves", "pull_windows", "outbox")
            if t in per
        }
    return db.stat().st_size, per, counts


def mib(n: float) -> str:
    return f"{n / 2**20:,.2f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="REF", required=True)
    parser.add_argument("--articles", type=int, default=1_000_000)
    parser.add_argument("--moves", type=int, default=100_000)
    args = parser.parse_args()
    # Children run from the temp directory: started in a checkout, `python -m` would put
    # its ./syncd ahead of PYTHONPATH (the --before code).
    os.chdir(tempfile.gettempdir())
    print(f"building the simulator: {args.articles:,} articles; {machine_load()}", flush=True)
    with (
        InstockSim(seed=7, articles=args.articles) as sim,
        tempfile.TemporaryDirectory(prefix="syncd-size-") as tmp,
    ):
        add_day_of_moves(sim, args.moves)
        root = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(export_commit(args.before, root))}
        sizes = {}
        for name, side_env in (("before", env), ("after", None)):
            db = fill(root / name, sim, side_env)
            sizes[name] = measure(db)
            print(f"{name}: {mib(sizes[name][0])}, rows {sizes[name][2]}", flush=True)
    (b_size, b_per, _), (a_size, a_per, _) = sizes["before"], sizes["after"]
    print(f"-- after {args.articles:,}-row scan + {args.moves:,} moves; {machine_load()}")
    print(f"   before ({args.before}) {mib(b_size)}, after {mib(a_size)}: "
          f"x{a_size / b_size:.4f} (target <= 1.10), +{mib(a_size - b_size)}")  # fmt: skip
    # The pending host file intents (the first scan's deltas as JSON) are most of the
    # file and the same on both sides: the ratio without them is the harder one.
    b_rest, a_rest = (
        sum(v for k, v in per.items() if not k.startswith(OUTBOX)) for per in (b_per, a_per)
    )
    print(f"   without the outbox (pending host files) {mib(b_rest)} -> {mib(a_rest)}: "
          f"x{a_rest / b_rest:.4f}")  # fmt: skip
    names = sorted(set(a_per) | set(b_per), key=lambda n: -abs(a_per.get(n, 0) - b_per.get(n, 0)))
    print("   largest differences per table/index (after - before):")
    for name in names[:8]:
        diff = a_per.get(name, 0) - b_per.get(name, 0)
        if diff:
            print(f"   {name:40} {b_per.get(name, 0):>12,} -> {a_per.get(name, 0):>12,} bytes")


if __name__ == "__main__":
    main()
