"""Benchmark: Instock inventory pull, syncd vs a minimal raw httpx + sqlite3 loop.

For each size (default 100k and 1M articles) it starts the Instock simulator in
its own process, then measures in separate processes, so that each peak RSS is
that process's own:

- raw: GET every inventory page with one httpx.Client, executemany into SQLite,
  commit per page (the floor any client pays on this machine, in this run);
- syncd: `syncd once instock.inventory` (first cycle: every row is new);
- syncd again: a second cycle with nothing changed; it must queue 0 intents and
  the sender then writes no host outbox file.

Prints rows/s, the ratio to the raw loop, and peak RSS. Targets: ratio >= 0.8,
RSS(1M) <= 1.2 x RSS(100k), second cycle 0 intents and 0 files.

    python bench/instock_pull.py [--sizes 100000 1000000] [--page-size 1000]
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

TOKEN = "instock-sandbox-token"  # the simulator's built-in credential


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_simulator(articles: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syncd.cli",
            "sandbox",
            "instock",
            "--port",
            str(port),
            "--articles",
            str(articles),
            "--seed",
            "7",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/sites", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=1)
            return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("simulator did not start")


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in KiB (from wait4), and stdout of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[:4]} failed:\n{out}\n{err[-3000:]}")
    return elapsed, usage.ru_maxrss, out


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


def count_pending(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(
            conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
        )


def bench_size(articles: int, page_size: int) -> dict[str, float]:
    sim, base = start_simulator(articles)
    try:
        with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
            work = Path(tmp)
            raw_s, raw_rss, raw_out = run_measured(
                [sys.executable, "-c", RAW_LOOP, base, TOKEN, str(work / "raw.db"), str(page_size)]
            )
            rows_text, raw_loop_s = raw_out.split()
            rows, raw_loop_s = int(rows_text), float(raw_loop_s)
            config = write_config(work, base, page_size)
            syncd = [sys.executable, "-m", "syncd.cli"]
            first_s, first_rss, _ = run_measured(
                [*syncd, "once", "instock.inventory", "--config", str(config)]
            )
            db = work / "state" / "syncd.db"
            queued_first = count_pending(db)
            first_job_s = job_seconds(db)
            run_measured([*syncd, "once", "outbox.send", "--config", str(config)])
            files_first = len(list((work / "host" / "outbox").glob("*")))
            _, second_rss, _ = run_measured(
                [*syncd, "once", "instock.inventory", "--config", str(config)]
            )
            queued_second = count_pending(db)
            second_job_s = job_seconds(db)
            run_measured([*syncd, "once", "outbox.send", "--config", str(config)])
            files_second = len(list((work / "host" / "outbox").glob("*"))) - files_first
    finally:
        sim.terminate()
        sim.wait(10)
    result = {
        "articles": articles,
        "rows": rows,
        "raw_rows_s": rows / raw_loop_s,
        "syncd_rows_s": rows / first_job_s,
        "ratio": raw_loop_s / first_job_s,
        "second_rows_s": rows / second_job_s,
        "second_ratio": raw_loop_s / second_job_s,
        "wall_ratio": raw_s / first_s,
        "raw_rss_mib": raw_rss / 1024,
        "syncd_rss_mib": max(first_rss, second_rss) / 1024,
        "queued_first": queued_first,
        "files_first": files_first,
        "queued_second": queued_second,
        "files_second": files_second,
    }
    print(
        f"{articles:>9,} articles {rows:>9,} rows | raw loop {result['raw_rows_s']:>9,.0f} rows/s "
        f"| syncd first cycle {result['syncd_rows_s']:>9,.0f} rows/s (x{result['ratio']:.2f} of raw; "
        f"x{result['wall_ratio']:.2f} counting process start-up) "
        f"| unchanged cycle {result['second_rows_s']:>9,.0f} rows/s (x{result['second_ratio']:.2f}) "
        f"| peak RSS raw {result['raw_rss_mib']:.0f} MiB, syncd {result['syncd_rss_mib']:.0f} MiB "
        f"| first cycle {queued_first} intents -> {files_first} files "
        f"| second cycle {queued_second} intents -> {files_second} files",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--page-size", type=int, default=1000)
    args = parser.parse_args()
    results = [bench_size(n, args.page_size) for n in args.sizes]
    if len(results) >= 2:
        growth = results[-1]["syncd_rss_mib"] / results[0]["syncd_rss_mib"]
        print(
            f"peak RSS growth {results[0]['articles']:,} -> {results[-1]['articles']:,}: x{growth:.2f} "
            "(target <= 1.2)"
        )
    worst = min(min(r["ratio"], r["second_ratio"]) for r in results)
    print(f"worst throughput ratio to raw: {worst:.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
