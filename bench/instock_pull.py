"""Benchmark: Instock inventory pull, syncd vs a minimal raw httpx + sqlite3 loop.

For each size (default 100k and 1M articles) it starts the Instock simulator in its own
process, warms it up (one raw loop and one syncd first cycle, not counted: the first scan
of a fresh simulator is much slower than the next), then runs `--rounds` rounds, raw and
syncd alternating which goes first (`bench/rounds.py`). Each contender is its own process,
so each peak RSS (`ru_maxrss` from `os.wait4`) is that whole process's own:

- raw: GET every inventory page with one httpx.Client, executemany into SQLite,
  commit per page (the floor any client pays on this machine, in this run);
- syncd first cycle: `syncd once instock.inventory` on a fresh state DB (every row is new;
  it queues the inventory deltas for the host), then `syncd once outbox.send` renders them;
- syncd unchanged cycle: the same job again, nothing changed: it must queue 0 intents and
  the sender then writes no host outbox file.

Rows/s are timed without process start-up (the raw loop times itself; syncd's job seconds
come from its `runs` table). Prints every round, then per contender the median and the
spread (min..max), the per-round ratios to the raw loop, each side's CPU seconds per 1M rows
(whole process) and their ratio, and the machine's load average.
`--profile` then runs one more first cycle under cProfile and prints where the time goes.

Targets: first cycle >= 0.9 x raw, unchanged cycle >= 0.95 x raw, peak RSS
<= 2 x raw and (1M) <= 1.2 x syncd's own at 100k; unchanged cycle 0 intents, 0 files.

`--before REF` adds a third contender: the same syncd cycles run by the code of git
commit REF (its source exported with `git archive` and put first on PYTHONPATH), in the
same rounds, so a change's cost is measured against the code before it on the same
simulator and machine state (the window ledger and lineage may cost the pull at
most 5% of rows/s). Each syncd cycle also reports its process's CPU seconds per 1M rows
(`ru_utime + ru_stime`, start-up included), steadier than rows/s when other work shares
the cores.

    python bench/instock_pull.py [--sizes 100000 1000000] [--page-size 1000] [--rounds 3]
                                 [--profile] [--before REF]
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rounds import (
    INSTOCK_TOKEN,
    Figures,
    Series,
    interleave,
    machine_load,
    ratios,
    run_measured,
    spread_of,
    start_instock,
    warm_up,
)

TOKEN = INSTOCK_TOKEN
MIRROR_COUNT = "SELECT count(*) FROM instock_inventory"


RAW_LOOP = textwrap.dedent(
    """
    import sqlite3, sys, httpx
    base, token, db, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL"); conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE inv (article_id TEXT PRIMARY KEY, free INT, reserved INT, registered INT)")
    import time
    started = time.perf_counter()
    rows, cursor = 0, ""
    with httpx.Client(headers={"Authorization": "Bearer " + token}, timeout=30) as client:
        while True:
            params = {"page_size": size}
            if cursor:
                params["start_cursor"] = cursor
            body = client.get(base + "/1.1.0-1/inventory", params=params).json()
            page = [(a["article_id"], a["qty"]["free"], a["qty"]["reserved"], a["qty"]["registered"])
                    for a in body["articles"]]
            conn.execute("BEGIN")
            conn.executemany("INSERT OR REPLACE INTO inv VALUES (?, ?, ?, ?)", page)
            conn.execute("COMMIT")
            rows += len(page)
            if not body["has_more"]:
                break
            cursor = body["next_cursor"]
    print(rows, time.perf_counter() - started)
    """
)


def write_config(work: Path, base: str, page_size: int) -> Path:
    work.mkdir(parents=True, exist_ok=True)
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
            base_url = "{base}"
            token = "{TOKEN}"
            site_id = "1.1.0-1"
            environment = "sandbox"
            page_size = {page_size}
            # The pull's own speed is measured, not the default budget's 20 requests/s;
            # the budget's bookkeeping is still paid on every request.
            rate_limit = {{ per_second = 100000, burst = 100000 }}
            [jobs."instock.inventory".options]
            reconcile = false
            """
        )
    )
    return config


def job_seconds(db: Path) -> float:
    """Duration of the last instock.inventory run as syncd recorded it (no process start-up)."""
    with sqlite3.connect(db) as conn:
        started, finished = conn.execute(
            "SELECT started_at, finished_at FROM runs WHERE job = 'instock.inventory' "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
    from syncd.clock import parse_iso

    return (parse_iso(finished) - parse_iso(started)).total_seconds()


def mirrored_rows(db: Path) -> int:
    """Rows the inventory mirror holds after a cycle (the rows the pull stored)."""
    with sqlite3.connect(db) as conn:
        return int(conn.execute(MIRROR_COUNT).fetchone()[0])


def count_pending(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(
            conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
        )


def count_files(work: Path) -> int:
    outbox = work / "host" / "outbox"
    return len(list(outbox.glob("*"))) if outbox.exists() else 0


def bench_size(articles: int, args: argparse.Namespace) -> dict[str, Any]:
    sim, base = start_instock(articles)
    syncd = [sys.executable, "-m", "syncd.cli"]
    try:
        with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
            root = Path(tmp)

            def raw(tag: str) -> Figures:
                db = root / f"{tag}.db"
                m = run_measured(
                    [sys.executable, "-c", RAW_LOOP, base, TOKEN, str(db), str(args.page_size)]
                )
                db.unlink()
                rows_text, loop_s = m.stdout.split()
                rows = int(rows_text)
                return {
                    "rows": rows,
                    "rows_s": rows / float(loop_s),
                    "rss_mib": m.rss_mib,
                    "cpu_per_m": m.cpu_s / rows * 1e6,
                }

            def syncd_cycles(tag: str, env: dict[str, str] | None = None) -> Figures:
                work = root / tag
                config = write_config(work, base, args.page_size)
                db = work / "state" / "syncd.db"
                once = [*syncd, "once", "instock.inventory", "--config", str(config)]
                send = [*syncd, "once", "outbox.send", "--config", str(config)]
                first = run_measured(once, env)
                first_s, queued_first = job_seconds(db), count_pending(db)
                sent = run_measured(send, env)
                files_first = count_files(work)
                second = run_measured(once, env)
                second_s, queued_second = job_seconds(db), count_pending(db)
                run_measured(send, env)
                files_second = count_files(work) - files_first
                rows = mirrored_rows(db)
                shutil.rmtree(work)
                return {
                    "rows": rows,
                    "rows_s": rows / first_s,
                    "second_rows_s": rows / second_s,
                    "rss_mib": first.rss_mib,
                    "second_rss_mib": second.rss_mib,
                    # CPU seconds of the whole process (start-up included) per 1M rows: on
                    # a loaded machine a steadier measure of the work than wall time.
                    "cpu_per_m": first.cpu_s / rows * 1e6,
                    "second_cpu_per_m": second.cpu_s / rows * 1e6,
                    "send_s": sent.wall_s,
                    "queued_first": queued_first,
                    "files_first": files_first,
                    "queued_second": queued_second,
                    "files_second": files_second,
                }

            contenders: dict[str, Any] = {"raw": raw, "syncd": syncd_cycles}
            if args.before:
                env = {**os.environ, "PYTHONPATH": str(export_commit(args.before, root))}
                contenders["before"] = lambda tag: syncd_cycles(tag, env)
            print(f"\n== {articles:,} articles, page {args.page_size}; {machine_load()}")
            warm_up(contenders)
            series = interleave(contenders, args.rounds, show=show_round)
            if args.profile:
                profile_first_cycle(root, base, args)
    finally:
        sim.terminate()
        try:
            sim.wait(60)  # a 1M-article simulator on a busy machine takes its time
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()
    return summarise(articles, series)


def export_commit(ref: str, root: Path) -> Path:
    """The source tree of commit `ref` under `root`/before-src (git archive, no worktree),
    checked to be the code `python -m syncd.cli` imports with it first on PYTHONPATH."""
    repo = Path(__file__).resolve().parent.parent
    dest = root / "before-src"
    dest.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", ref, "syncd"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    found = subprocess.run(
        [sys.executable, "-c", "import syncd; print(syncd.__file__)"],
        env={**os.environ, "PYTHONPATH": str(dest)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not found.startswith(str(dest)):
        raise SystemExit(f"--before {ref}: python imports syncd from {found}, not {dest}")
    print(f"before: syncd at {ref} from {dest}")
    return dest


def show_round(_round: int, name: str, f: Figures) -> str:
    if name == "raw":
        return (
            f"{f['rows']:,} rows, {f['rows_s']:,.0f} rows/s, peak RSS {f['rss_mib']:.0f} MiB, "
            f"CPU {f['cpu_per_m']:.1f} s per 1M rows"
        )
    return (
        f"first cycle {f['rows_s']:,.0f} rows/s ({f['queued_first']} intents -> "
        f"{f['files_first']} files, send {f['send_s']:.1f} s), unchanged cycle "
        f"{f['second_rows_s']:,.0f} rows/s ({f['queued_second']} intents -> "
        f"{f['files_second']} files), peak RSS {f['rss_mib']:.0f} / {f['second_rss_mib']:.0f} MiB, "
        f"CPU {f['cpu_per_m']:.1f} / {f['second_cpu_per_m']:.1f} s per 1M rows"
    )


def summarise(articles: int, series: dict[str, Series]) -> dict[str, Any]:
    raw, syncd = series["raw"], series["syncd"]
    first = ratios(syncd, "rows_s", raw, "rows_s")
    second = ratios(syncd, "second_rows_s", raw, "rows_s")
    rss = ratios(syncd, "rss_mib", raw, "rss_mib")
    n = len(raw.rounds)
    print(f"-- {articles:,} articles, median of {n} rounds (min..max); {machine_load()}")
    print(f"   raw loop            {raw.spread('rows_s')} rows/s, RSS {raw.spread('rss_mib')} MiB")
    print(
        f"   syncd first cycle   {syncd.spread('rows_s')} rows/s, x{spread_of(first)} of raw "
        "(target >= 0.90)"
    )
    print(
        f"   syncd unchanged     {syncd.spread('second_rows_s')} rows/s, x{spread_of(second)} "
        "of raw (target >= 0.95)"
    )
    print(
        f"   syncd peak RSS      {syncd.spread('rss_mib')} MiB first, "
        f"{syncd.spread('second_rss_mib')} MiB unchanged; x{spread_of(rss)} of raw (target <= 2)"
    )
    cpu_first = ratios(syncd, "cpu_per_m", raw, "cpu_per_m")
    cpu_second = ratios(syncd, "second_cpu_per_m", raw, "cpu_per_m")
    print(
        f"   CPU s per 1M rows   raw {raw.spread('cpu_per_m', ',.1f')}, syncd "
        f"{syncd.spread('cpu_per_m', ',.1f')} first, {syncd.spread('second_cpu_per_m', ',.1f')} "
        f"unchanged: x{spread_of(cpu_first)} and x{spread_of(cpu_second)} of raw (whole "
        "processes, start-up included: what bounds rows/s when the cores are shared)"
    )
    last = syncd.rounds[-1]
    print(
        f"   unchanged cycle     {last['queued_second']} intents -> {last['files_second']} files "
        "(target 0 and 0)"
    )
    if "before" in series:
        before = series["before"]
        was = ratios(syncd, "rows_s", before, "rows_s")
        was_second = ratios(syncd, "second_rows_s", before, "second_rows_s")
        cpu = ratios(syncd, "cpu_per_m", before, "cpu_per_m")
        cpu_second = ratios(syncd, "second_cpu_per_m", before, "second_cpu_per_m")
        print(
            f"   before (--before)   {before.spread('rows_s')} rows/s first, "
            f"{before.spread('second_rows_s')} rows/s unchanged"
        )
        print(
            f"   syncd / before      x{spread_of(was)} first cycle, x{spread_of(was_second)} "
            "unchanged (target >= 0.95: the change costs at most 5% of rows/s)"
        )
        print(
            f"   CPU s per 1M rows   syncd {syncd.spread('cpu_per_m', ',.1f')} first, "
            f"{syncd.spread('second_cpu_per_m', ',.1f')} unchanged; before "
            f"{before.spread('cpu_per_m', ',.1f')} first, "
            f"{before.spread('second_cpu_per_m', ',.1f')} unchanged"
        )
        print(
            f"   CPU syncd / before  x{spread_of(cpu, '.3f')} first cycle, "
            f"x{spread_of(cpu_second, '.3f')} unchanged (<= 1.05: at most 5% more work per row)"
        )
    return {
        "articles": articles,
        "first_ratio": statistics.median(first),
        "second_ratio": statistics.median(second),
        "syncd_rss_mib": max(syncd.median("rss_mib"), syncd.median("second_rss_mib")),
    }


def profile_first_cycle(root: Path, base: str, args: argparse.Namespace) -> None:
    """One more first cycle, profiled: with py-spy (every thread, sampled, idle waits left
    out) when it is installed, else cProfile (the main thread only: not the page reader)."""
    work = root / "profile"
    config = write_config(work, base, args.page_size)
    job = ["-m", "syncd.cli", "once", "instock.inventory", "--config", str(config)]
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy:
        out = root / "first-cycle.txt"
        run_measured(
            [spy, "record", "-r", "250", "-f", "raw", "-o", str(out), "--", sys.executable, *job]
        )
        seconds = job_seconds(work / "state" / "syncd.db")
        print(f"-- first cycle under py-spy, all threads (job {seconds:.1f} s):")
        print_collapsed(out.read_text())
    else:
        out = root / "first-cycle.prof"
        run_measured([sys.executable, "-m", "cProfile", "-o", str(out), *job])
        seconds = job_seconds(work / "state" / "syncd.db")
        print(f"-- first cycle under cProfile, main thread only (job {seconds:.1f} s):")
        stats = pstats.Stats(str(out))
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
    if args.keep_profile:
        shutil.copy(out, args.keep_profile)


def print_collapsed(text: str, top: int = 25) -> None:
    """Self and inclusive shares of the sampled frames (py-spy's collapsed stacks)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1] for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    print(f"   {total} samples; self time:")
    for frame, count in own.most_common(top):
        print(f"   {100 * count / total:5.1f}%  {frame}")
    print("   inclusive (syncd frames):")
    shown = [(f, c) for f, c in inclusive.most_common() if "syncd/" in f]
    for frame, count in shown[:top]:
        print(f"   {100 * count / total:5.1f}%  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="profile one more first cycle")
    parser.add_argument("--keep-profile", type=Path, help="copy the cProfile output here")
    parser.add_argument(
        "--before", metavar="REF", help="also run the syncd of this git commit, same rounds"
    )
    args = parser.parse_args()
    # Children run from the temp directory: started in a checkout, `python -m` would put
    # its ./syncd ahead of PYTHONPATH (the --before code).
    os.chdir(tempfile.gettempdir())
    results = [bench_size(n, args) for n in args.sizes]
    if len(results) >= 2:
        growth = results[-1]["syncd_rss_mib"] / results[0]["syncd_rss_mib"]
        print(
            f"syncd peak RSS {results[0]['articles']:,} -> {results[-1]['articles']:,}: "
            f"x{growth:.2f} (target <= 1.2)"
        )


if __name__ == "__main__":
    main()
