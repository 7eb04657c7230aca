"""Benchmark: an idle site is idle. `syncd run` with the demo schedules, nothing changing.

Starts the five simulators in this process (as `syncd demo` does), writes the demo's host
inbox files (catalog, book stock, customer orders, the planning feeds) and a few DSOrder
orders, and runs `syncd run --config config/demo.toml` as a child process. After
`--settle` seconds (the first cycles load the inbox, send the articles and orders, run
the planning exports) and once the outbox holds nothing pending, nothing changes any
more: no warehouse works, no store submits, no host file arrives. Then, for `--minutes`,
it counts what the daemon still does:

- writes to the host outbox (files in `outbox/`, intents for the `host` destination);
- push requests: every request that is not a read (GET, Instock's bulk inventory read,
  Netstock's token and its pops, which read and remove) to any remote;
- requests per minute to each remote, by route;
- state DB growth in bytes per hour (pages in use, and the files with the WAL), with the
  rows added to `runs` (the one table an idle daemon is expected to grow);
- the daemon's CPU as a share of one core, from /proc/<pid>/stat (all its threads).

Targets: 0 host outbox writes, 0 push requests, CPU below 2 % of one core,
DB growth only from run rows.

    python bench/idle.py [--minutes 10] [--settle 90] [--seed 7]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from instock_pull import print_collapsed
from rounds import machine_load

from syncd.clock import iso
from syncd.demo import (
    ARTICLES,
    NETSTOCK_PHASES,
    demo_config_path,
    write_inbox,
    write_planning_inbox,
)
from syncd.sandbox.base import RequestRecord
from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.import_jobs import ImportJobsSim
from syncd.sandbox.instock import InstockSim
from syncd.sandbox.netstock import NetstockSim
from syncd.sandbox.oregon_siop import OregonSiopSim

ZONE = "Europe/Amsterdam"
# Requests that are not GET but only read (Netstock's pops read and remove what they
# return: reads of the remote's queue, not pushes of syncd's data).
READS = {
    "POST /v1/{site_id}/inventory",
    "POST /application/o/token/",
    "POST /file/pop_po",
    "POST /file/pop_tr",
    "POST /file/pop_wo",
}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (every thread), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def runs_by_job(db: Path, since: str) -> list[tuple[str, int, float]]:
    """(job, runs, mean seconds) of the runs started since `since` (ISO text)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return list(
            conn.execute(
                "SELECT job, count(*), avg((julianday(finished_at) - julianday(started_at)) "
                "* 86400) FROM runs WHERE started_at >= ? AND finished_at IS NOT NULL "
                "GROUP BY job ORDER BY 2 DESC",
                [since],
            )
        )
    finally:
        conn.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def read_db(db: Path) -> dict[str, Any]:
    """What the state DB holds now, read-only (the daemon keeps writing)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        outbox = dict(conn.execute("SELECT destination, count(*) FROM outbox GROUP BY destination"))
        pending = conn.execute(
            "SELECT count(*) FROM outbox WHERE status IN ('pending', 'retrying')"
        ).fetchone()[0]
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        rows = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        conn.close()
    files = sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())
    return {
        "used": (pages - free) * page_size,
        "files": files,
        "runs": runs,
        "outbox": outbox,
        "pending": pending,
        "rows": rows,
    }


def host_files(host_dir: Path) -> set[str]:
    outbox = host_dir / "outbox"
    return {p.name for p in outbox.iterdir()} if outbox.exists() else set()


def profile_daemon(pid: int, seconds: float) -> tuple[subprocess.Popen[bytes], Path]:
    """py-spy (from this venv or PATH) sampling the running daemon, in the background."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    out = Path(tempfile.mkdtemp(prefix="syncd-idle-spy-")) / "daemon.txt"
    cmd = [
        spy,
        "record",
        "-p",
        str(pid),
        "-d",
        str(int(seconds)),
        "-r",
        "100",
        "-f",
        "raw",
        "--gil",
    ]
    proc = subprocess.Popen(
        [*cmd, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return proc, out


def is_push(record: RequestRecord) -> bool:
    return record.method != "GET" and (record.route or record.path) not in READS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="idle minutes measured")
    parser.add_argument("--settle", type=float, default=90.0, help="seconds before measuring")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also sample the daemon with py-spy for this long (the thread holding the GIL)",
    )
    args = parser.parse_args()
    if args.minutes <= 0:
        raise SystemExit("--minutes must be positive")

    base = Path(tempfile.mkdtemp(prefix="syncd-idle-"))
    state_dir, host_dir = base / "state", base / "host"
    db = state_dir / "syncd.db"
    rng = random.Random(args.seed)
    with contextlib.ExitStack() as stack:
        sim = stack.enter_context(InstockSim(seed=args.seed, articles=ARTICLES))
        stores = stack.enter_context(DSOrderSim(seed=args.seed, tz=ZONE))
        netstock = stack.enter_context(NetstockSim(seed=args.seed, phases=NETSTOCK_PHASES))
        imports = stack.enter_context(ImportJobsSim(seed=args.seed))
        imports.start_worker()
        stack.callback(imports.stop_worker)
        oregon = stack.enter_context(OregonSiopSim(seed=args.seed))
        remotes = {
            "instock": sim,
            "dsorder": stores,
            "netstock": netstock,
            "import_jobs": imports,
            "oregon_siop": oregon,
        }
        write_inbox(sim, host_dir / "inbox", rng)
        write_planning_inbox(sim, host_dir / "inbox", rng, datetime.now(ZoneInfo(ZONE)).date())
        stocked = sorted(a for a in sim.state.articles if sim.stock(a).free > 20)
        stores.generate(4, articles=stocked, fractional_rate=0.1, unknown_rate=0.05)
        env = {
            **os.environ,
            "SYNCD_CONNECTORS__INSTOCK__BASE_URL": sim.base_url,
            "SYNCD_CONNECTORS__DSORDER__BASE_URL": stores.base_url,
            "SYNCD_CONNECTORS__NETSTOCK__BASE_URL": netstock.base_url,
            "SYNCD_CONNECTORS__IMPORT_JOBS__BASE_URL": imports.base_url,
            "SYNCD_CONNECTORS__OREGON_SIOP__BASE_URL": oregon.base_url,
            "SYNCD_DAEMON__STATE_DIR": str(state_dir),
            "SYNCD_HOST__DIR": str(host_dir),
            "SYNCD_METRICS__TEXTFILE": str(base / "metrics" / "syncd.prom"),
        }
        log_path = base / "syncd.log"
        print(f"idle benchmark in {base}; {machine_load()}", flush=True)
        with log_path.open("w") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "syncd.cli", "run", "--config", str(demo_config_path())],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            try:
                measure(args, daemon, db, host_dir, remotes)
            finally:
                if daemon.poll() is None:
                    daemon.send_signal(signal.SIGTERM)
                daemon.wait(60)
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


def print_requests(remotes: dict[str, Any], since: float, minutes: float) -> list[str]:
    """Requests per minute by remote and route since `since` (epoch); the pushes among them."""
    pushes: list[str] = []
    print("   requests per minute, by remote and route:")
    for name, remote in remotes.items():
        window = [r for r in remote.requests if r.timestamp >= since]
        routes = Counter(r.route or f"{r.method} {r.path}" for r in window)
        pushes += [f"{name}: {r.method} {r.path} -> {r.status}" for r in window if is_push(r)]
        print(f"   {name:<12} {len(window) / minutes:7.1f}/min")
        for route, count in routes.most_common():
            print(f"      {count / minutes:7.1f}/min  {route}")
    return pushes


def measure(
    args: argparse.Namespace,
    daemon: subprocess.Popen[bytes],
    db: Path,
    host_dir: Path,
    remotes: dict[str, Any],
) -> None:
    time.sleep(args.settle)
    deadline = time.monotonic() + 300
    while read_db(db)["pending"] and time.monotonic() < deadline:
        time.sleep(2)
    if daemon.poll() is not None:
        raise SystemExit(f"syncd run ended early ({daemon.returncode})")
    before, files_before = read_db(db), host_files(host_dir)
    cpu_before, started, wall_started = cpu_seconds(daemon.pid), time.monotonic(), time.time()
    split_before, since = cpu_split(daemon.pid), iso()
    print(
        f"settled after {args.settle:.0f} s (outbox: {before['outbox']}); measuring "
        f"{args.minutes:g} idle minutes",
        flush=True,
    )
    spy = profile_daemon(daemon.pid, args.profile) if args.profile else None
    end = started + args.minutes * 60
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(60.0, left))
        if daemon.poll() is not None:
            raise SystemExit(f"syncd run ended early ({daemon.returncode})")
        spent = time.monotonic() - started
        cpu = cpu_seconds(daemon.pid) - cpu_before
        print(f"  {spent / 60:4.1f} min: daemon CPU {100 * cpu / spent:.2f} %", flush=True)
    wall = time.monotonic() - started
    cpu = cpu_seconds(daemon.pid) - cpu_before
    user, system = (b - a for a, b in zip(split_before, cpu_split(daemon.pid), strict=True))
    if spy is not None:
        spy[0].wait()
        print(f"-- the daemon under py-spy for {args.profile:.0f} s, the thread holding the GIL:")
        print_collapsed(spy[1].read_text())
    after, files_after = read_db(db), host_files(host_dir)
    rss = rss_mib(daemon.pid)
    minutes, hours = wall / 60, wall / 3600

    new_files = sorted(files_after - files_before)
    host_intents = after["outbox"].get("host", 0) - before["outbox"].get("host", 0)
    intents = {
        d: after["outbox"].get(d, 0) - before["outbox"].get(d, 0)
        for d in sorted(set(after["outbox"]) | set(before["outbox"]))
    }
    print(f"\n-- {wall / 60:.1f} idle minutes under `syncd run` (demo schedules); {machine_load()}")
    pushes = print_requests(remotes, wall_started, minutes)
    runs = after["runs"] - before["runs"]
    used = after["used"] - before["used"]
    print(
        f"   host outbox writes  {len(new_files)} files, {host_intents} host intents "
        f"(target 0){': ' + ', '.join(new_files[:5]) if new_files else ''}"
    )
    print(f"   outbox intents      {intents} (all destinations)")
    print(f"   push requests       {len(pushes)} (target 0)")
    for line in pushes[:10]:
        print(f"      {line}")
    print(
        f"   state DB growth     {used / hours:,.0f} bytes/hour in pages used "
        f"({runs} run rows, {runs / minutes:.1f}/min; {used / max(runs, 1):,.0f} bytes/run), "
        f"files incl. WAL {(after['files'] - before['files']) / hours:+,.0f} bytes/hour "
        f"(now {after['files']:,} bytes)"
    )
    grown = {
        t: n - before["rows"].get(t, 0)
        for t, n in after["rows"].items()
        if n != before["rows"].get(t, 0)
    }
    print(f"   rows added          {grown} (by table; expected: runs only)")
    print("   runs by job         per minute, mean wall seconds:")
    for job, count, mean in runs_by_job(db, since):
        print(f"      {count / minutes:6.1f}/min  {mean:6.3f} s  {job}")
    print(
        f"   daemon CPU          {100 * cpu / wall:.2f} % of one core ({cpu:.1f} s in "
        f"{wall:.0f} s: user {user:.1f} s, system {system:.1f} s; target < 2 %), "
        f"RSS {rss:.0f} MiB"
    )


if __name__ == "__main__":
    main()
