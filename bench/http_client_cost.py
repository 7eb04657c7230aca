"""Benchmark: the CPU one request costs syncd's HTTP client, against bare httpx.

Every syncd request goes through `syncd.http.HttpClient`: the rate budget, a correlation
id, the request deadline on every socket operation, the body read in bounded chunks,
retries (tenacity), metrics and the error classification. This measures what that costs
per request, on the one thread that sends, against a bare `httpx.Client.get().json()` to
the same URL of the same simulator:

- `bare`: `httpx.Client.get(path).json()`, one client, keep-alive;
- `http`: `HttpClient.get_json_object(path)` (syncd's HTTP layer alone);
- `connector`: `InstockClient.get_article(id)` (the HTTP layer plus the connector's record
  validation, as a job reads one record).

The Instock simulator runs in a child process (`syncd sandbox instock`, `rounds.start_instock`), so its CPU is not
counted; each contender's CPU is `time.thread_time()` around `--requests` GETs of one
article, so the figure is the sending thread's alone. Each contender runs once uncounted,
then `--rounds` rounds alternate the order (`bench/rounds.py`); the summary gives the
median microseconds per request with the spread and the per-round ratio to `bare`.
Logging is configured as the daemon's (JSON at info), so debug lines cost what they cost
there. `--profile` prints where the `connector` contender's time goes (cProfile).

    python bench/http_client_cost.py [--requests 2000] [--rounds 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from syncd.config import InstockConfig
from syncd.connectors.instock import InstockClient
from syncd.logs import configure_logging

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rounds import (
    INSTOCK_TOKEN,
    Figures,
    interleave,
    machine_load,
    ratios,
    spread_of,
    start_instock,
    warm_up,
)


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {INSTOCK_TOKEN}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="GETs per contender a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    configure_logging("info", "json", io.StringIO())
    proc, base = start_instock(100, wait=30)
    try:
        site = httpx.get(f"{base}/sites", headers=auth()).json()["sites"][0]["site_id"]
        listed = httpx.get(f"{base}/articles", headers=auth(), params={"limit": 1}).json()
        article_id = listed["articles"][0]["article_id"]
        path = f"/articles/{article_id}"
        config = InstockConfig.model_validate(
            {
                "enabled": True,
                "base_url": base,
                "token": INSTOCK_TOKEN,
                "site_id": site,
                "rate_limit": {"per_second": 0},  # the budget's arithmetic, never a wait
            }
        )
        bare = httpx.Client(base_url=base, headers=auth())
        client = InstockClient(config)
        n = args.requests

        def timed(send: Callable[[], object]) -> Callable[[str], Figures]:
            def run(_label: str) -> Figures:
                started = time.thread_time()
                for _ in range(n):
                    send()
                return {"us": (time.thread_time() - started) / n * 1e6}

            return run

        contenders = {
            "bare": timed(lambda: bare.get(path).json()),
            "http": timed(lambda: client.http.get_json_object(path)),
            "connector": timed(lambda: client.get_article(article_id)),
        }
        print(f"http client cost: {n} GETs a contender a round; {machine_load()}", flush=True)
        warm_up(contenders)
        series = interleave(
            contenders, args.rounds, show=lambda _r, _n, f: f"{f['us']:.0f} us/request"
        )
        print(f"\nCPU per request, median of {args.rounds} rounds (min..max); {machine_load()}")
        for name, runs in series.items():
            line = f"{name:>10}: {runs.spread('us', ',.0f')} us"
            if name != "bare":
                line += f"   x{spread_of(ratios(runs, 'us', series['bare'], 'us'))} of bare"
            print(line)
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(contenders["connector"], "profile")
            stats = pstats.Stats(profile).sort_stats("cumulative")
            stats.print_stats(r"syncd/|tenacity|structlog|prometheus", 30)
        bare.close()
        client.close()
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
