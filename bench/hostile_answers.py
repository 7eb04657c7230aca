"""Benchmark: memory for an oversized answer and time for a trickling one.

Starts the hostile upstream (tests/hostile_upstream.py) on loopback and,
each in its own process so that each RSS figure is that process's own:

- big: one Instock inventory page of `--big-mb` MB (valid JSON, no Content-Length),
  read with the given `max_response_bytes`: prints the RSS growth from before the
  request to the process's peak, and how the request ended;
- bomb: one page of `--bomb-mb` MB sent gzip-compressed (a few hundred KB on the
  wire, `Content-Encoding: gzip`), read with the same cap: the RSS growth shows
  whether decoding is bounded by the cap or inflates whole chunks;
- slow: one answer sent at 1 byte/s, read with `request_deadline = --deadline`
  (one attempt): prints the wall time until the request ended, and how.

`--syncd PATH` runs against another checkout's `syncd` package (e.g. the code
before these bounds) to compare; a request still running after `--give-up`
seconds is reported as not ended.

    python bench/hostile_answers.py [--big-mb 50] [--bomb-mb 200] [--cap 16MiB] [--deadline 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hostile_upstream import (  # noqa: E402
    HostileUpstream,
    encoded,
    oversized,
    trickle,
)

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    # The checkout under test, not the package installed in editable mode.
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in str(f)]
    sys.path.insert(0, sys.argv[3])
    from syncd.config import InstockConfig
    from syncd.connectors.instock import InstockClient

    def rss_kb():
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

    base_url, extra = sys.argv[1], json.loads(sys.argv[2])
    known = set(InstockConfig.model_fields)
    config = InstockConfig.model_validate({
        "enabled": True, "base_url": base_url, "token": "t", "site_id": "S1",
        "retry": {"max_attempts": 1}, "timeouts": {"read": 30},
        **{k: v for k, v in extra.items() if k in known},
    })
    client = InstockClient(config)
    before = rss_kb()
    started = time.monotonic()
    try:
        pages = list(client.inventory_pages())
        outcome = f"ok ({len(pages)} page)"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {str(exc)[:110]}"
    wall = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_mb": before / 1024, "peak_mb": peak / 1024,
                      "growth_mb": (peak - before) / 1024, "wall_s": wall, "outcome": outcome}))
    """
)


def child(syncd_root: Path, base_url: str, extra: dict[str, object], give_up: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(syncd_root)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, base_url, json.dumps(extra), str(syncd_root)],
            env=env,
            capture_output=True,
            text=True,
            timeout=give_up,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"outcome": f"not ended after {give_up:g} s (killed)", "wall_s": give_up}
    if done.returncode:
        return {"outcome": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def gzip_page(megabytes: int) -> bytes:
    """A page of `megabytes` MB, gzipped a block at a time: this process never holds the
    page (a child process inherits its parent's peak RSS, which would spoil the figure)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    parts = [packer.compress(b'{"articles": [], "has_more": false, "pad": "')]
    block = b"x" * 1_000_000
    parts += [packer.compress(block) for _ in range(megabytes)]
    parts += [packer.compress(b'"}'), packer.flush()]
    return b"".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big-mb", type=int, default=50)
    parser.add_argument("--bomb-mb", type=int, default=200)
    parser.add_argument("--cap", default="16MiB", help="max_response_bytes for big and bomb")
    parser.add_argument("--deadline", type=float, default=10.0)
    parser.add_argument("--give-up", type=float, default=60.0)
    parser.add_argument("--syncd", type=Path, default=ROOT, help="checkout holding syncd/")
    parser.add_argument("--only", choices=("big", "bomb", "slow"), default=None)
    args = parser.parse_args()

    with HostileUpstream() as up:
        if args.only in (None, "big"):
            up.script("GET", "/S1/inventory", oversized(args.big_mb * 1_000_000))
            big = child(args.syncd, up.base_url, {"max_response_bytes": args.cap}, args.give_up)
            print(f"big {args.big_mb} MB answer, cap {args.cap}: {json.dumps(big)}")
        if args.only in (None, "bomb"):
            body = gzip_page(args.bomb_mb)
            up.script("GET", "/S1/inventory", encoded(body, "gzip"))
            bomb = child(args.syncd, up.base_url, {"max_response_bytes": args.cap}, args.give_up)
            print(
                f"bomb {args.bomb_mb} MB gzipped to {len(body) // 1000} KB, cap {args.cap}: "
                f"{json.dumps(bomb)}"
            )
        if args.only in (None, "slow"):
            body = json.dumps({"articles": [], "has_more": False}).encode() + b" " * 200
            up.script("GET", "/S1/inventory", trickle(body, 1.0))
            slow = child(args.syncd, up.base_url, {"request_deadline": args.deadline}, args.give_up)
            print(f"slow 1 byte/s answer, deadline {args.deadline:g}s: {json.dumps(slow)}")


if __name__ == "__main__":
    main()
