"""Helpers the kill -9 trials share (test_crash_trials, test_netstock_crash_trials,
test_planning_crash_trials): run `syncd once JOB` as a real process and SIGKILL it at a chosen
point, run the rest in one long-lived worker, read the state DB, compare end states, and run
independent trials two at a time.

Ways to kill a process at a seeded point:

- **a request the simulator receives** (`Trap`, armed by wrapping a simulator's handlers with
  `trapped`): before the simulator applies it (it never arrives), after it is applied but
  before it is answered (the answer is lost), or `delay` seconds after the answer was handed
  back (syncd is recording it; with the first request of a run and a random delay this is
  also "a random delay into the run").
- **after the k-th COMMIT** of the state DB (or k-th host file link): `HOOK` is loaded into
  every syncd process as `sitecustomize` (`write_hook`, `syncd_env(hook, "commit:K")`) and
  the process SIGKILLs itself right after it.
- **a timer** from the start of the process (`run_killed(..., timer=seconds)`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from syncd.sandbox.base import ApiError, Request, Response, SandboxServer
from tests.system.conftest import clean_env

PARALLEL = int(os.environ.get("CRASH_TRIALS_PARALLEL", "2"))  # trials at a time
T = TypeVar("T")
PYCACHE = f"syncd-trials-pycache-{os.getuid()}"  # see `trial_env`

# One interpreter that runs `syncd once JOB` for every job name it reads on stdin, so that
# the continuation after a crash does not pay an interpreter start per step. It reports
# how many commits and host file links each run made (counted by the hook below).
WORKER = r"""
import json, sys, time
import sitecustomize as hook
from syncd.cli import main
config = sys.argv[1]
for line in sys.stdin:
    job = line.strip()
    if not job:
        break
    started = time.monotonic()
    hook.counts.update(commit=0, link=0)
    try:
        main(["once", job, "--config", config], standalone_mode=False)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:
        code = f"{type(exc).__name__}: {exc}"
    result = {"job": job, "code": code, "s": time.monotonic() - started, **hook.counts}
    print("@@" + json.dumps(result), flush=True)
"""

# Loaded into every syncd process of the trials (as `sitecustomize`, through PYTHONPATH): it
# counts COMMITs of the state DB and links of host outbox files (`os.link` publishes them),
# and with CRASH_TRIALS_KILL_AT=commit:K or link:K the process SIGKILLs itself right after
# the K-th: a crash exactly after a durable step, before whatever comes next.
HOOK = r"""
import os, signal, sqlite3

counts = {"commit": 0, "link": 0}
_what, _, _nth = os.environ.get("CRASH_TRIALS_KILL_AT", "").partition(":")


def _tick(what):
    counts[what] += 1
    if what == _what and counts[what] == int(_nth):
        os.kill(os.getpid(), signal.SIGKILL)


class _Connection(sqlite3.Connection):
    def execute(self, sql, *args):
        cursor = super().execute(sql, *args)
        if isinstance(sql, str) and sql.strip().upper() == "COMMIT":
            _tick("commit")
        return cursor


_connect = sqlite3.connect


def _counting_connect(*args, **kwargs):
    kwargs.setdefault("factory", _Connection)
    return _connect(*args, **kwargs)


sqlite3.connect = _counting_connect
_link = os.link


def _counting_link(*args, **kwargs):
    _link(*args, **kwargs)
    _tick("link")


os.link = _counting_link
"""


def write_hook(directory: Path) -> Path:
    """Put `HOOK` into `directory` as `sitecustomize.py`; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(HOOK, encoding="utf-8")
    return directory


def trial_env(**extra: str) -> dict[str, str]:
    """`clean_env`, and where the environment forbids bytecode files (PYTHONDONTWRITEBYTECODE)
    a bytecode cache outside the source tree instead: the trials start many interpreters,
    and compiling syncd each time costs about as much as a short job run."""
    env = clean_env(**extra)
    if env.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / PYCACHE))
    return env


def syncd_env(hook: Path, kill_at: str = "") -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    return trial_env(PYTHONPATH=path, CRASH_TRIALS_KILL_AT=kill_at)


# --- a kill at a request the simulator receives -----------------------------------------------


@dataclass
class Trap:
    """Kill `proc` at the `occurrence`-th request on one of `routes`, at `moment`."""

    routes: tuple[str, ...]
    occurrence: int
    moment: str
    delay: float = 0.0  # for "answered": how long after the answer is handed back
    proc: subprocess.Popen[str] | None = None
    seen: int = 0
    fired: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, route: str) -> bool:
        with self.lock:
            if self.fired or route not in self.routes:
                return False
            self.seen += 1
            if self.seen < self.occurrence:
                return False
            self.fired = True
            return True

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL
        self.proc.wait(timeout=10)


class Trapping(Protocol):
    """A simulator that fires `trap` (when set) and answers each request `lag` s late."""

    trap: Trap | None
    lag: float


def trapped(
    owner: Trapping, handler: Callable[[Request], Response]
) -> Callable[[Request], Response]:
    """`handler`, applied at once, answered `owner.lag` seconds later, firing `owner.trap`."""

    def handle(request: Request) -> Response:
        trap = owner.trap
        hit = trap is not None and trap.hit(request.route)
        if hit and trap.moment == "before":
            trap.kill()
            raise ApiError(503, "service_unavailable", "the caller is dead")
        try:
            response = handler(request)
            time.sleep(owner.lag)
        finally:
            # Also when the handler refused the request (an error answer is handled too):
            # a trap that fired must kill, or the trial waits on a process left running.
            if hit:
                if trap.moment == "applied":
                    trap.kill()
                else:
                    threading.Timer(trap.delay, trap.kill).start()
        return response

    return handle


def wrap_routes(
    server: SandboxServer, wrap: Callable[[Callable[[Request], Response]], Any]
) -> None:
    """Replace every registered route's handler by `wrap(handler)` (for simulators that
    register their routes in `__init__`)."""
    router = server.router
    router._routes = [dataclasses.replace(r, handler=wrap(r.handler)) for r in router._routes]


# --- the trial's config ----------------------------------------------------------------------


class InstockAt(Protocol):
    """Where an Instock simulator listens and what it accepts."""

    base_url: str
    token: str
    site_id: str


INSTOCK = """
timeouts = { connect = "2s", read = "20s" }
retry = { max_attempts = 4, initial_backoff = "100ms", max_backoff = "1s", max_elapsed = "10s" }
"""  # the Instock connector's timeouts and retries of a trial that waits on a daemon


def trial_outbox(interval: str) -> str:
    """The sender every `interval`, backing off 100 ms .. 1 s."""
    return f"""
schedule = {{ interval = "{interval}" }}
initial_backoff = "100ms"
max_backoff = "1s"
"""


def write_trial_config(
    root: Path,
    sim: InstockAt,
    *,
    outbox: str,
    instock: str,
    jobs: str = "",
    log_level: str = "warning",
) -> Path:
    """`root/syncd.toml` of an Instock trial: state and host under `root`, JSON logs, host
    files taken at once, the Instock connector on `sim` (a sandbox site, 100 a page).
    `outbox` and `instock` are the rest of those tables (TOML lines), `jobs` the job
    tables; each trial file says what it runs and how fast."""
    path = root / "syncd.toml"
    path.write_text(
        f"""
[daemon]
state_dir = {json.dumps(str(root / "state"))}
shutdown_timeout = "5s"

[logging]
level = "{log_level}"
format = "json"

[host]
dir = {json.dumps(str(root / "host"))}
settle_time = "0s"

[outbox]
{outbox.strip()}

[connectors.instock]
enabled = true
base_url = "{sim.base_url}"
token = "{sim.token}"
site_id = "{sim.site_id}"
environment = "sandbox"
page_size = 100
{instock.strip()}

{jobs.strip()}
""",
        encoding="utf-8",
    )
    return path


# --- running syncd ----------------------------------------------------------------------------


@contextlib.contextmanager
def daemon(root: Path, config: Path, hook: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`syncd run` with the counting hook, its output in `root/daemon.log`; killed (if it
    still runs) and reaped on the way out, so no trial leaves a daemon behind."""
    with (root / "daemon.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncd.cli", "run", "--config", str(config)],
            env=syncd_env(hook),
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def syncd(config: Path, job: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "syncd.cli", "once", job, "--config", str(config)],
        env=trial_env() if env is None else env,
        cwd=config.parent,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_once(config: Path, job: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    proc = syncd(config, job)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"syncd once {job} did not finish in {timeout:g}s\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_ok(config: Path, job: str) -> str:
    done = run_once(config, job)
    assert done.returncode == 0, (
        f"syncd once {job}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def run_killed(
    sim: Trapping,
    config: Path,
    job: str,
    trap: Trap | None,
    timer: float | None,
    env: dict[str, str] | None = None,
) -> int:
    """Run `job` with the trap armed (or a kill after `timer` seconds); its exit code."""
    proc = syncd(config, job, env)
    if trap is not None:
        trap.proc = proc
        sim.trap = trap
    try:
        if timer is not None:
            try:
                proc.wait(timeout=timer)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.communicate(timeout=30)
    finally:
        sim.trap = None
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode


class Worker:
    """A process that runs `syncd once JOB` for each job it is given."""

    def __init__(self, root: Path, config: Path, hook: Path) -> None:
        self.log = root / "worker.log"
        self._stderr = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(config)],
            env=syncd_env(hook),
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
        )
        self._results: list[dict[str, Any]] = []
        self._ready = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("@@"):
                with self._ready:
                    self._results.append(json.loads(line[2:]))
                    self._ready.notify_all()
        with self._ready:
            self._ready.notify_all()

    def run(self, job: str, timeout: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        wanted = len(self._results) + 1
        self.proc.stdin.write(job + "\n")
        self.proc.stdin.flush()
        with self._ready:
            self._ready.wait_for(
                lambda: len(self._results) >= wanted or self.proc.poll() is not None, timeout
            )
            if len(self._results) < wanted:
                pytest.fail(f"worker gave no result for {job}:\n{self.tail()}")
            return self._results[wanted - 1]

    def tail(self) -> str:
        self._stderr.flush()
        return self.log.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


def gather(trials: list[Callable[[], T]]) -> list[tuple[bool, T | str]]:
    """Run independent trials PARALLEL at a time: (True, its result) or (False, why it failed)."""
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = [pool.submit(trial) for trial in trials]
    outcomes: list[tuple[bool, T | str]] = []
    for future in futures:
        try:
            outcomes.append((True, future.result()))
        except (AssertionError, pytest.fail.Exception) as exc:
            outcomes.append((False, str(exc)))
        except Exception as exc:
            outcomes.append((False, "".join(traceback.format_exception(exc))))
    return outcomes


def run_trials(trials: list[Callable[[], str]]) -> None:
    """Run independent trials PARALLEL at a time; report every failure, not just the first."""
    outcomes = gather(trials)
    print("\n" + "\n".join(str(value) for ok, value in outcomes if ok))
    failed = [str(value) for ok, value in outcomes if not ok]
    assert not failed, "\n\n".join(failed)


# --- state --------------------------------------------------------------------------------------


def db_rows(db: Path, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def take_snapshot(root: Path, into: Path) -> None:
    into.mkdir(parents=True)
    for part in ("state", "host"):
        if (root / part).exists():
            shutil.copytree(root / part, into / part)


def restore(snapshot: Path, root: Path) -> None:
    for part in ("state", "host"):
        if (snapshot / part).exists():
            shutil.copytree(snapshot / part, root / part)


# --- comparing end states -------------------------------------------------------------------------


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def describe(want: Any, have: Any) -> str:
    """How `have` differs from `want` (Counters, dicts, lists), in one line."""
    if isinstance(want, Counter) and isinstance(have, Counter):
        missing, extra = want - have, have - want
        return f"missing {_short(missing)}; extra {_short(extra)}"
    if isinstance(want, dict) and isinstance(have, dict):
        keys = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        return "; ".join(f"{k}: {want.get(k)!r} != {have.get(k)!r}" for k in keys[:5]) + (
            f" (and {len(keys) - 5} more)" if len(keys) > 5 else ""
        )
    if isinstance(want, list) and isinstance(have, list):
        return (
            f"missing {_short(Counter(want) - Counter(have))}; "
            f"extra {_short(Counter(have) - Counter(want))}"
        )
    return f"{want!r} != {have!r}"


def _short(counter: Counter[Any]) -> str:
    items = list(counter.items())
    text = ", ".join(f"{n}x {k}" for k, n in items[:4])
    return f"{sum(counter.values())} [{text}{', ...' if len(items) > 4 else ''}]"
