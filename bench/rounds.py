"""What every benchmark here shares: warm up, alternate, report the median and the spread.

A single measurement on this shared 2-core machine says little: the first scan of a fresh
simulator is slower than the next, and whoever runs second after a busy spell of the
machine gains. So a benchmark

- runs each contender once before counting anything (`warm_up`), so the simulator has
  built what it caches and the page cache holds the files;
- then runs `rounds` rounds, each contender once per round, alternating which goes first
  (`interleave`: raw, syncd; then syncd, raw; ...);
- and reports the median of the rounds with the spread (min..max), and the ratio of the
  two per round (`Series`, `ratios`), with the machine's load average (`machine_load`).

Every contender runs as its own process, so its peak RSS is its own: `run_measured` reads
`ru_maxrss` of that child from `os.wait4`.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

Figures = dict[str, Any]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


INSTOCK_TOKEN = "instock-sandbox-token"  # the Instock simulator's built-in credential


def start_instock(articles: int, *, wait: float = 600) -> tuple[subprocess.Popen[bytes], str]:
    """`syncd sandbox instock` (seed 7) on a free port, in a process of its own so its CPU
    is not the measured one's; returns it and its base URL once it answers (a large
    simulator takes a while to generate)."""
    port = free_port()
    serve = ["sandbox", "instock", "--port", str(port), "--articles", str(articles)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd.cli", *serve, "--seed", "7"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            httpx.get(
                f"{base}/sites", headers={"Authorization": f"Bearer {INSTOCK_TOKEN}"}, timeout=1
            )
            return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the Instock simulator did not answer within {wait:g} s")


@dataclass(frozen=True)
class Measured:
    """One child process: wall seconds, peak RSS (KiB, `ru_maxrss`), CPU seconds, stdout."""

    wall_s: float
    rss_kib: int
    cpu_s: float
    stdout: str

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024


def run_measured(cmd: Sequence[str], env: Mapping[str, str] | None = None) -> Measured:
    """Run `cmd` to its end (output to temp files, so a chatty child never blocks on a pipe)
    and reap it with `os.wait4`: the rusage is that child's alone. A failure stops the
    benchmark with the child's output."""
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), stdout=out_f, stderr=err_f, env=dict(env) if env is not None else None
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read().decode(), err_f.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"{list(cmd)[:4]} failed ({proc.returncode}):\n{out}\n{err[-3000:]}")
    return Measured(elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime, out)


@dataclass
class Series:
    """The rounds of one contender: a list of figures dicts, summarised by key."""

    name: str
    rounds: list[Figures] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [float(f[key]) for f in self.rounds]

    def median(self, key: str) -> float:
        return statistics.median(self.values(key))

    def spread(self, key: str, spec: str = ",.0f") -> str:
        """`median (min..max)`, formatted with `spec`."""
        values = self.values(key)
        return f"{statistics.median(values):{spec}} ({min(values):{spec}}..{max(values):{spec}})"


def ratios(numerator: Series, key_n: str, denominator: Series, key_d: str) -> list[float]:
    """Per-round ratios numerator[key_n] / denominator[key_d] (round i with round i)."""
    return [
        float(n[key_n]) / float(d[key_d])
        for n, d in zip(numerator.rounds, denominator.rounds, strict=True)
    ]


def spread_of(values: Sequence[float], spec: str = ".2f") -> str:
    return f"{statistics.median(values):{spec}} ({min(values):{spec}}..{max(values):{spec}})"


def warm_up(contenders: Mapping[str, Callable[[str], Figures]]) -> None:
    """Run each contender once, not counted."""
    for name, run in contenders.items():
        run(f"warm-{name}")
        print(f"warm-up {name}: done (not counted)", flush=True)


def interleave(
    contenders: Mapping[str, Callable[[str], Figures]],
    rounds: int,
    *,
    show: Callable[[int, str, Figures], str] | None = None,
) -> dict[str, Series]:
    """`rounds` rounds of every contender, the order reversed every other round."""
    if rounds < 3:
        raise SystemExit("--rounds: at least 3 (a median of fewer says little)")
    series = {name: Series(name) for name in contenders}
    order = list(contenders)
    for round_no in range(1, rounds + 1):
        for name in order if round_no % 2 else reversed(order):
            figures = contenders[name](f"{name}-{round_no}")
            series[name].rounds.append(figures)
            if show is not None:
                print(f"round {round_no} {name:>6}: {show(round_no, name, figures)}", flush=True)
    return series


def machine_load() -> str:
    """The load average and core count, to print beside every figure."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"
