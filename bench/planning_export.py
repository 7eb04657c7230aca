"""Benchmark: planning exports (import-jobs demand history, Netstock master), syncd vs raw loops.

For each size (default 10k and 100k articles x 52 weeks) it writes host files into a fresh
host inbox (articles: one row per article; sales: one row per article per closed week,
streamed to the CSV, so demand history is articles x weeks weekly records), then measures,
each in its own process so that each peak RSS is that process's own:

- load: `syncd once host.inbox` (articles + sales into host_articles / host_sales);
- demand history, import-jobs path (a fresh import-jobs simulator per measurement, jobs
  PENDING 0 s and processed at once, so a job is COMPLETED at its first poll):
  - raw: one sqlite3 GROUP BY over host_sales in syncd's state DB (read-only) -> weekly
    records, POSTed in `--batch-size` batches to /api/import/demand-history with one
    httpx.Client, each job polled until COMPLETED (no bookkeeping of what was sent);
  - syncd: `syncd once planning.import` with `endpoints = ["demand-history"]`;
- Netstock master (articles lines; a fresh Netstock simulator per measurement, processing
  phases 0 s):
  - raw: token, dataset/start, model/start, host_articles rows mapped to master lines and
    POSTed in `--chunk-size` chunks to /import/master, model/end, start_processing, status;
  - syncd: `syncd once netstock.export` with `models = ["master"]`.

Each pair is warmed up once (not counted), then `--rounds` rounds alternate raw and syncd
(which goes first swaps every round, `bench/rounds.py`); every syncd round starts from the
state DB as host.inbox left it (nothing sent yet). Medians with the spread (min..max) and
the per-round ratios are printed with the machine's load average.

Job seconds come from syncd's `runs` table (no process start-up); raw seconds are timed
inside the raw loop (no start-up either). Peak RSS from `os.wait4`. The simulator's own CPU
seconds during each measurement (from /proc/<pid>/stat) are printed: when they come close
to the wall seconds the simulator, not the client, is the bottleneck.

Targets: syncd >= 0.8 x the raw loop's rows/s; peak RSS flat across sizes (<= 1.2x).

    python bench/planning_export.py [--sizes 10000 100000] [--weeks 52] [--batch-size 500]
                                    [--chunk-size 1000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rounds import (
    Figures,
    Series,
    free_port,
    interleave,
    machine_load,
    ratios,
    run_measured,
    spread_of,
    warm_up,
)

IMPORT_JOBS_KEY = "import-jobs-sandbox-key"  # the simulator's built-in key
NETSTOCK_USER = "SANDBOX-CUSTOMER"  # the simulator's built-in user
NETSTOCK_PASSWORD = "netstock-sandbox-password"  # the sandbox credential
NETSTOCK_CLIENT = "netstock-sandbox-client"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Simulator:
    """A simulator in its own process; `cpu()` is its user+system CPU seconds so far."""

    def __init__(self, kind: str) -> None:
        self.port = free_port()
        if kind == "import_jobs":
            extra = ["--pending-seconds", "0", "--rows-per-second", "0"]
        else:
            extra = ["--phases", "0,0,0,0", "--initial-files", "0"]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "syncd.cli",
                "sandbox",
                kind.replace("_", "-"),
                "--port",
                str(self.port),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(self.base + "/", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.proc.kill()
        raise SystemExit(f"{kind} simulator did not start")

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# --- host files --------------------------------------------------------------------------


def closed_weeks(weeks: int) -> list[date]:
    """The Mondays of the `weeks` closed weeks before the current one (what planning.import
    sends with demand_weeks_back = weeks and include_open_week = false)."""
    today = datetime.now(UTC).date()
    current = today - timedelta(days=today.weekday())
    return [current - timedelta(weeks=w) for w in range(weeks, 0, -1)]


def write_host_files(inbox: Path, articles: int, weeks: int) -> int:
    """articles CSV and sales CSV (one sale per article per week, streamed); returns sales."""
    inbox.mkdir(parents=True)
    ids = [f"A{n:08d}" for n in range(articles)]
    with (inbox / "articles-bench.csv").open("w", newline="") as out:
        out.write("article_id,name,description,unit\n")
        for n, article in enumerate(ids):
            out.write(f"{article},Article {n},Benchmark article {n},EA\n")
    mondays = [d.isoformat() for d in closed_weeks(weeks)]
    sales = 0
    with (inbox / "sales-bench.csv").open("w", newline="", buffering=1 << 20) as out:
        out.write("transaction_id,line_id,sale_date,article_id,qty,channel\n")
        for w, monday in enumerate(mondays):
            # Tuesday of the week: the job groups it onto its Monday
            day = (date.fromisoformat(monday) + timedelta(days=1)).isoformat()
            out.writelines(
                f"S{w:03d}-{n:08d},1,{day},{article},{1 + (n + w) % 9},\n"
                for n, article in enumerate(ids)
            )
            sales += len(ids)
    return sales


def write_config(work: Path, import_jobs: str, netstock: str, args: argparse.Namespace) -> Path:
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
            settle_time = 0
            [connectors.import_jobs]
            enabled = true
            base_url = "{import_jobs}"
            api_key = "{IMPORT_JOBS_KEY}"
            # syncd's own speed is measured, not the default budget's 5 requests/s (the
            # raw loop has none); the budget's bookkeeping is still paid on every request.
            rate_limit = {{ per_second = 100000, burst = 100000 }}
            [connectors.import_jobs.options]
            poll_interval = 0.01
            [connectors.netstock]
            enabled = true
            base_url = "{netstock}"
            username = "{NETSTOCK_USER}"
            password = "{NETSTOCK_PASSWORD}"
            client_id = "{NETSTOCK_CLIENT}"
            rate_limit = {{ per_second = 100000, burst = 100000 }}
            [connectors.netstock.options]
            chunk_size = {args.chunk_size}
            scope = "dataorchestrator"
            [jobs."planning.import".options]
            endpoints = ["demand-history"]
            batch_size = {args.batch_size}
            demand_weeks_back = {args.weeks}
            include_open_week = false
            on_missing_forecast = "api_default"
            [jobs."netstock.export".options]
            models = ["master"]
            poll_interval = 0.05
            poll_timeout = 60
            """
        )
    )
    return config


def last_run(db: Path, job: str) -> tuple[float, dict[str, int], str]:
    """(seconds, counts, status) of the job's last run as syncd recorded it."""
    from syncd.clock import parse_iso

    with sqlite3.connect(db) as conn:
        started, finished, counts, status, pushed, pulled = conn.execute(
            "SELECT started_at, finished_at, counts, status, pushed, pulled FROM runs "
            "WHERE job = ? "
            "ORDER BY id DESC LIMIT 1",
            [job],
        ).fetchone()
    found = {**json.loads(counts), "pushed": pushed, "pulled": pulled}
    return (parse_iso(finished) - parse_iso(started)).total_seconds(), found, status


# --- raw loops -----------------------------------------------------------------------------

RAW_DEMAND = textwrap.dedent(
    """
    import sqlite3, sys, time, httpx
    base, key, db, batch, first, end = sys.argv[1:7]
    batch = int(batch)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    started = time.perf_counter()
    rows = jobs = 0
    with httpx.Client(base_url=base, headers={"x-api-key": key}, timeout=60) as client:
        def send(records):
            global jobs
            job = client.post("/api/import/demand-history", json={"records": records})
            job.raise_for_status()
            job_id, delay = job.json()["jobId"], 0.01
            while True:
                state = client.get(f"/api/import/status/{job_id}").json()
                if state["status"] in ("COMPLETED", "FAILED"):
                    assert state["status"] == "COMPLETED" and state["failedCount"] == 0, state
                    jobs += 1
                    return
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        cursor = conn.execute(
            "SELECT article_id, location, coalesce(nullif(channel, ''), 'ALL'), "
            "date(sale_date, 'weekday 0', '-6 days'), total(qty) FROM host_sales "
            "WHERE sale_date >= ? AND sale_date < ? GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
            [first, end],
        )
        records = []
        for article, location, channel, week, qty in cursor:
            records.append({"skuId": article, "locationId": location or "SITE",
                            "weekStarting": week, "channel": channel,
                            "actualDemand": max(int(qty) if qty == int(qty) else qty, 0)})
            if len(records) >= batch:
                send(records)
                rows += len(records)
                records = []
        if records:
            send(records)
            rows += len(records)
    print(rows, time.perf_counter() - started, jobs)
    """
)

RAW_NETSTOCK = textwrap.dedent(
    """
    import sqlite3, sys, time, httpx
    base, user, password, client_id, db, chunk = sys.argv[1:7]
    chunk = int(chunk)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    started = time.perf_counter()
    rows = posts = 0
    with httpx.Client(base_url=base, timeout=60) as client:
        token = client.post("/application/o/token/", data={
            "client_id": client_id, "username": user, "password": password,
            "grant_type": "client_credentials", "scope": "dataorchestrator"}).json()
        client.headers["Authorization"] = "Bearer " + token["access_token"]
        ids = {"customer_identifier": user}
        def call(method, path, **kw):
            answer = client.request(method, path, **kw)
            assert answer.status_code < 300 and answer.json()["api_call_status"], answer.text
            return answer.json()
        dataset = call("POST", "/dataset/start", json=ids)["data"]["dataset_import_id"]
        ids["dataset_import_id"] = dataset
        call("POST", "/model/start", json={**ids, "model": "master"})
        lines = []
        for article_id, name, description, unit in conn.execute(
            "SELECT article_id, name, description, unit FROM host_articles ORDER BY article_id"
        ):
            lines.append({"item_code": article_id, "description": description or name,
                          "unique_identifier": None, "uom": unit, "unit_volume": None,
                          "unit_weight": None})
            if len(lines) >= chunk:
                call("POST", "/import/master", json={**ids, "data": lines})
                rows, posts, lines = rows + len(lines), posts + 1, []
        if lines:
            call("POST", "/import/master", json={**ids, "data": lines})
            rows, posts = rows + len(lines), posts + 1
        call("POST", "/model/end", json={**ids, "model": "master", "total_lines_imported": rows})
        call("POST", "/dataset/start_processing", json=ids)
        while True:
            data = call("GET", "/dataset/status", params=ids)["data"]
            if data.get("status") == "Complete":
                assert data.get("success"), data
                break
            time.sleep(0.05)
    print(rows, time.perf_counter() - started, posts)
    """
)


# --- the benchmark -------------------------------------------------------------------------


def measure(kind: str, cmd: Callable[[str], list[str]]) -> Figures:
    """Run `cmd(base)` against a fresh simulator: wall, RSS, stdout, own and simulator CPU."""
    sim = Simulator(kind)
    try:
        cpu0 = sim.cpu()
        m = run_measured(cmd(sim.base))
        sim_cpu = sim.cpu() - cpu0
    finally:
        sim.stop()
    return {
        "wall": m.wall_s,
        "rss_mib": m.rss_mib,
        "out": m.stdout,
        "sim_cpu": sim_cpu,
        "cpu": m.cpu_s,
    }


def restore(template: Path, db: Path) -> None:
    """The state DB as host.inbox left it: nothing sent yet (a syncd round must not find
    the previous round's sends and skip them as unchanged)."""
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copy2(template, db)


def summarise(
    articles: int, key: str, label: str, series: dict[str, Series], rounds: int
) -> dict[str, float]:
    """Print the medians, spreads and per-round ratios of one pair; the table's figures."""
    per_round = ratios(series["syncd"], "rows_s", series["raw"], "rows_s")
    r, y = series["raw"], series["syncd"]
    print(
        f"[{articles:,}] {label}, median of {rounds} rounds (min..max); "
        f"{machine_load()}\n"
        f"    raw   {r.spread('rows_s')} rows/s, peak RSS {r.spread('rss_mib')} MiB, "
        f"CPU {r.spread('cpu', '.1f')} s\n"
        f"    syncd {y.spread('rows_s')} rows/s, peak RSS {y.spread('rss_mib')} MiB, "
        f"CPU {y.spread('cpu', '.1f')} s\n"
        f"    syncd / raw x{spread_of(per_round)} per round (target >= 0.90)",
        flush=True,
    )
    assert y.values("rows") == [r.rounds[0]["rows"]] * rounds, "rows differ"
    return {
        f"{key}_rows": r.rounds[0]["rows"],
        f"{key}_raw_rows_s": r.median("rows_s"),
        f"{key}_syncd_rows_s": y.median("rows_s"),
        f"{key}_ratio": statistics.median(per_round),
        f"{key}_ratio_min": min(per_round),
        f"{key}_ratio_max": max(per_round),
        f"{key}_raw_rss": r.median("rss_mib"),
        f"{key}_syncd_rss": y.median("rss_mib"),
        f"{key}_sim_cpu_raw": statistics.median(f["sim_cpu"] / f["seconds"] for f in r.rounds),
        f"{key}_sim_cpu_syncd": statistics.median(f["sim_cpu"] / f["seconds"] for f in y.rounds),
    }


def bench_size(articles: int, args: argparse.Namespace) -> dict[str, float]:
    syncd = [sys.executable, "-m", "syncd.cli"]
    with tempfile.TemporaryDirectory(prefix="syncd-bench-", dir=args.tmp) as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        sales = write_host_files(work / "host" / "inbox", articles, args.weeks)
        gen_s = time.perf_counter() - t0
        size_mib = sum(p.stat().st_size for p in (work / "host" / "inbox").iterdir()) / 2**20
        # placeholders; each measurement rewrites the config with its simulator's URL
        config = write_config(work, "http://127.0.0.1:9", "http://127.0.0.1:9", args)
        db = work / "state" / "syncd.db"
        loaded = run_measured([*syncd, "once", "host.inbox", "--config", str(config)])
        load_s, load_counts, load_status = last_run(db, "host.inbox")
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        template = work / "loaded.db"
        shutil.copy2(db, template)
        print(
            f"[{articles:,}] host files {size_mib:,.0f} MiB written in {gen_s:.1f}s; host.inbox "
            f"{load_status}: {load_counts.get('pulled', 0):,} rows in {load_s:.1f}s "
            f"({load_counts.get('pulled', 0) / load_s:,.0f} rows/s), peak RSS "
            f"{loaded.rss_mib:.0f} MiB; {machine_load()}",
            flush=True,
        )
        mondays = closed_weeks(args.weeks)
        window = [mondays[0].isoformat(), (mondays[-1] + timedelta(days=7)).isoformat()]

        def raw_demand(_tag: str) -> Figures:
            f = measure(
                "import_jobs",
                lambda base: [
                    sys.executable,
                    "-c",
                    RAW_DEMAND,
                    base,
                    IMPORT_JOBS_KEY,
                    str(db),
                    str(args.batch_size),
                    *window,
                ],
            )
            rows, seconds, jobs = f["out"].split()
            return {
                **f,
                "rows": int(rows),
                "seconds": float(seconds),
                "jobs": int(jobs),
                "rows_s": int(rows) / float(seconds),
            }

        def syncd_demand(_tag: str) -> Figures:
            restore(template, db)

            def cmd(base: str) -> list[str]:
                write_config(work, base, "http://127.0.0.1:9", args)
                return [*syncd, "once", "planning.import", "--config", str(config)]

            f = measure("import_jobs", cmd)
            seconds, counts, status = last_run(db, "planning.import")
            rows = counts.get("pushed", 0)
            return {
                **f,
                "rows": rows,
                "seconds": seconds,
                "status": status,
                "rows_s": rows / seconds,
            }

        def raw_master(_tag: str) -> Figures:
            f = measure(
                "netstock",
                lambda base: [
                    sys.executable,
                    "-c",
                    RAW_NETSTOCK,
                    base,
                    NETSTOCK_USER,
                    NETSTOCK_PASSWORD,
                    NETSTOCK_CLIENT,
                    str(db),
                    str(args.chunk_size),
                ],
            )
            lines, seconds, posts = f["out"].split()
            return {
                **f,
                "rows": int(lines),
                "seconds": float(seconds),
                "posts": int(posts),
                "rows_s": int(lines) / float(seconds),
            }

        def syncd_master(_tag: str) -> Figures:
            restore(template, db)

            def cmd(base: str) -> list[str]:
                write_config(work, "http://127.0.0.1:9", base, args)
                return [*syncd, "once", "netstock.export", "--config", str(config)]

            f = measure("netstock", cmd)
            seconds, counts, status = last_run(db, "netstock.export")
            rows = counts.get("lines_sent", 0)
            return {
                **f,
                "rows": rows,
                "seconds": seconds,
                "status": status,
                "rows_s": rows / seconds,
            }

        def show(_round: int, name: str, f: Figures) -> str:
            return (
                f"{f['rows']:,} rows, {f['rows_s']:,.0f} rows/s in {f['seconds']:.1f} s "
                f"{f.get('status', '')} (own CPU {f['cpu']:.1f} s, sim CPU {f['sim_cpu']:.1f} s), "
                f"peak RSS {f['rss_mib']:.0f} MiB"
            )

        result: dict[str, float] = {
            "articles": articles,
            "sales": sales,
            "load_s": load_s,
            "load_rows_s": load_counts.get("pulled", 0) / load_s,
            "load_rss": loaded.rss_mib,
        }
        for key, label, raw, syn in (
            ("demand", "demand-history", raw_demand, syncd_demand),
            ("master", "netstock master", raw_master, syncd_master),
        ):
            print(f"[{articles:,}] {label}:", flush=True)
            contenders = {"raw": raw, "syncd": syn}
            warm_up(contenders)
            series = interleave(contenders, args.rounds, show=show)
            result |= summarise(articles, key, label, series, args.rounds)
        if args.profile:
            profile_demand(template, db, config, work, args)
        if args.keep:
            shutil.copy2(db, Path(args.keep) / f"syncd-{articles}.db")
    return result


def profile_demand(
    template: Path, db: Path, config: Path, work: Path, args: argparse.Namespace
) -> None:
    """One more syncd demand-history run under py-spy (every thread, sampled), printed as
    self and inclusive shares (bench/instock_pull.py's `print_collapsed`)."""
    from instock_pull import print_collapsed

    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    restore(template, db)
    out = work / "demand.txt"
    job = [sys.executable, "-m", "syncd.cli", "once", "planning.import", "--config", str(config)]

    def cmd(base: str) -> list[str]:
        write_config(work, base, "http://127.0.0.1:9", args)
        gil = ["--gil"] if args.profile_gil else []
        return [spy, "record", "-r", "250", *gil, "-f", "raw", "-o", str(out), "--", *job]

    f = measure("import_jobs", cmd)
    seconds, _, _ = last_run(db, "planning.import")
    threads = "the thread holding the GIL" if args.profile_gil else "all threads"
    print(f"-- demand history under py-spy, {threads} (job {seconds:.1f} s, CPU {f['cpu']:.1f} s):")
    print_collapsed(out.read_text(), top=35)
    if args.keep:
        which = "gil" if args.profile_gil else "all"
        shutil.copy2(out, Path(args.keep) / f"demand-profile-{which}.txt")


def table(results: list[dict[str, float]]) -> None:
    head = (
        f"{'articles':>9} {'job':<16} {'rows':>10} {'raw rows/s':>11} {'syncd rows/s':>12} "
        f"{'ratio':>6} {'raw RSS':>8} {'syncd RSS':>9} {'sim CPU% raw/syncd':>19}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in results:
        print(
            f"{r['articles']:>9,} {'host.inbox load':<16} {r['sales'] + r['articles']:>10,} "
            f"{'':>11} {r['load_rows_s']:>12,.0f} {'':>6} {'':>8} {r['load_rss']:>5.0f} MiB"
        )
        for job, key in (("demand-history", "demand"), ("netstock master", "master")):
            print(
                f"{r['articles']:>9,} {job:<16} {r[key + '_rows']:>10,} "
                f"{r[key + '_raw_rows_s']:>11,.0f} {r[key + '_syncd_rows_s']:>12,.0f} "
                f"{r[key + '_ratio']:>6.2f} ({r[key + '_ratio_min']:.2f}..{r[key + '_ratio_max']:.2f}) {r[key + '_raw_rss']:>4.0f} MiB "
                f"{r[key + '_syncd_rss']:>5.0f} MiB "
                f"{100 * r[key + '_sim_cpu_raw']:>8.0f}% /{100 * r[key + '_sim_cpu_syncd']:>4.0f}%"
            )
    if len(results) >= 2:
        small, big = results[0], results[-1]
        for job, key in (("demand-history", "demand"), ("netstock master", "master")):
            growth = big[key + "_syncd_rss"] / small[key + "_syncd_rss"]
            print(
                f"peak RSS {job} {small['articles']:,} -> {big['articles']:,} articles: "
                f"{small[key + '_syncd_rss']:.0f} -> {big[key + '_syncd_rss']:.0f} MiB, "
                f"x{growth:.2f} (target <= 1.2)"
            )
        growth = big["load_rss"] / small["load_rss"]
        print(f"peak RSS host.inbox load: x{growth:.2f}")
    worst = min(min(r["demand_ratio"], r["master_ratio"]) for r in results)
    print(f"worst throughput ratio to raw: {worst:.2f} (target >= 0.90)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--batch-size", type=int, default=500, help="planning.import batch")
    parser.add_argument("--chunk-size", type=int, default=1000, help="Netstock lines per post")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tmp", default=None, help="where the work directories go")
    parser.add_argument("--keep", default=None, help="copy each state DB into this directory")
    parser.add_argument(
        "--profile", action="store_true", help="profile one more syncd demand-history run"
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL (where Python's time goes)",
    )
    args = parser.parse_args()
    results = [bench_size(n, args) for n in args.sizes]
    table(results)


if __name__ == "__main__":
    main()
