"""How fast the Instock simulator itself serves, so client benchmarks know their ceiling.

Runs a seeded simulator (20k articles by default) and one keep-alive httpx.Client, and
prints requests/s (and items/s for lists) for full article and inventory walks at
page_size 1000 and for single GETs. Each phase is time-boxed; the whole run stays < 20 s.

    .venv/bin/python bench/sim_serve_rate.py [--articles 20000] [--seconds 2.5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import httpx

from syncd.sandbox.instock import InstockSim


def _timed(seconds: float, one_round: Callable[[], int]) -> tuple[int, int, float]:
    """Repeat ``one_round`` (returns items fetched) for ``seconds``; (requests, items, elapsed)."""
    requests = items = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        items += one_round()
        requests += 1
    return requests, items, time.perf_counter() - started


def _walker(client: httpx.Client, path: str) -> Callable[[], int]:
    """One page per call, wrapping round to the first page at the end of the list."""
    cursor: dict[str, str] = {}

    def one_page() -> int:
        page = client.get(path, params={"page_size": 1000, **cursor}).json()
        if page["has_more"]:
            cursor["start_cursor"] = page["next_cursor"]
        else:
            cursor.clear()
        return len(page["articles"])

    return one_page


def _single(client: httpx.Client, paths: list[str]) -> Callable[[], int]:
    position = [0]

    def one_get() -> int:
        path = paths[position[0] % len(paths)]
        position[0] += 1
        client.get(path).raise_for_status()
        return 1

    return one_get


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=2.5, help="per phase")
    args = parser.parse_args()

    started = time.perf_counter()
    sim = InstockSim(seed=1, articles=args.articles)
    print(f"generated {args.articles} articles in {time.perf_counter() - started:.2f} s")
    with (
        sim,
        httpx.Client(
            base_url=sim.base_url, headers={"Authorization": f"Bearer {sim.token}"}, timeout=10
        ) as client,
    ):
        site = sim.site_id
        ids = sim.state.article_ids[:: max(1, len(sim.state.article_ids) // 1000)]
        phases = {
            "GET /articles page_size=1000": _walker(client, "/articles"),
            f"GET /{site}/inventory page_size=1000": _walker(client, f"/{site}/inventory"),
            "GET /articles/{id}": _single(client, [f"/articles/{a}" for a in ids]),
            f"GET /{site}/inventory/{{id}}": _single(
                client, [f"/{site}/inventory/{a}" for a in ids]
            ),
        }
        for name, one_round in phases.items():
            requests, items, elapsed = _timed(args.seconds, one_round)
            print(
                f"{name:42s} {requests / elapsed:8.0f} req/s {items / elapsed:10.0f} items/s"
                f"  ({requests} requests in {elapsed:.1f} s)"
            )
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
