"""`--dry-run` of every job changes nothing anywhere: host files, state DB, remotes.

All five simulators run on loopback; the host inbox holds the demo's files (catalog,
stock, orders, planning feeds). The jobs are taken one by one in a realistic order:
before and after each job's dry run the whole host directory (every entry, its
bytes, mode and mtime), the state directory's files, a full `.dump` of the state DB
(every table, `runs` included: a dry run records no run row) and every
simulator's request log are compared. A dry run may read a remote (GET) but never
write to it, and never calls Netstock's destructive `/file/pop_*`. Then the job
runs for real (where cheap), so the next dry run meets a state with work in it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import syncd.jobs  # noqa: F401 - fills the job registry
from syncd.clock import iso
from syncd.config import Settings, load_settings
from syncd.demo import NETSTOCK_PHASES, demo_config_path, write_inbox, write_planning_inbox
from syncd.jobs import REGISTRY
from syncd.jobs.runner import RunResult, run_job
from syncd.sandbox.base import Simulator
from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.import_jobs import ImportJobsSim
from syncd.sandbox.instock import InstockSim
from syncd.sandbox.netstock import NetstockSim
from syncd.sandbox.oregon_siop import OregonSiopSim
from syncd.state import Store
from syncd.state.backfills import request_backfill
from tests.system.conftest import clean_env

ZONE = "Europe/Amsterdam"
READS = ("GET", "HEAD")


@dataclass
class World:
    settings: Settings
    config: Path
    sims: dict[str, Simulator]
    instock: InstockSim
    dsorder: DSOrderSim
    netstock: NetstockSim


def _config(tmp: Path, sims: dict[str, Simulator]) -> Path:
    """The demo configuration with the simulators' URLs and private directories."""
    text = demo_config_path().read_text()
    replace = {
        '"http://127.0.0.1:8765/v1"': json.dumps(sims["instock"].base_url),
        '"http://127.0.0.1:8766"': json.dumps(sims["dsorder"].base_url),
        '"http://127.0.0.1:8767"': json.dumps(sims["netstock"].base_url),
        '"http://127.0.0.1:8768"': json.dumps(sims["import_jobs"].base_url),
        '"http://127.0.0.1:8769/v1"': json.dumps(sims["oregon_siop"].base_url),
        '"/tmp/syncd-demo/state"': json.dumps(str(tmp / "state")),
        '"/tmp/syncd-demo/host"': json.dumps(str(tmp / "host")),
        'settle_time = "1s"': "settle_time = 0",
        'level = "info"': 'level = "warning"',
    }
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp / "syncd.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("dry-run")
    with contextlib.ExitStack() as stack:
        instock = stack.enter_context(InstockSim(seed=3, articles=30))
        dsorder = stack.enter_context(DSOrderSim(seed=3, tz=ZONE))
        netstock = stack.enter_context(NetstockSim(seed=3, phases=NETSTOCK_PHASES))
        imports = stack.enter_context(ImportJobsSim(seed=3))
        oregon = stack.enter_context(OregonSiopSim(seed=3))
        sims: dict[str, Simulator] = {
            "instock": instock,
            "dsorder": dsorder,
            "netstock": netstock,
            "import_jobs": imports,
            "oregon_siop": oregon,
        }
        config = _config(tmp, sims)
        rng = random.Random(3)
        write_inbox(instock, tmp / "host" / "inbox", rng)
        write_planning_inbox(
            instock, tmp / "host" / "inbox", rng, datetime.now(ZoneInfo(ZONE)).date()
        )
        stocked = sorted(a for a in instock.state.articles if instock.stock(a).free > 20)
        dsorder.generate(3, articles=stocked, fractional_rate=0.0, unknown_rate=0.0)
        netstock.generate("po", files=1)
        yield World(load_settings(config), config, sims, instock, dsorder, netstock)


# --- what "nothing changed" means ------------------------------------------------------------


def _tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under `root` (not followed): kind, mode, size, mtime and, for files, bytes."""
    found: dict[str, tuple[Any, ...]] = {}
    if not root.exists():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            digest = ""
            if stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = (
                stat.S_IFMT(info.st_mode),
                stat.S_IMODE(info.st_mode),
                info.st_size if not stat.S_ISDIR(info.st_mode) else 0,
                info.st_mtime_ns,
                digest,
            )
    return found


def _dump(db: Path) -> list[str]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return list(conn.iterdump())


@dataclass
class Snapshot:
    host: dict[str, tuple[Any, ...]]
    state_files: list[str]
    dump: list[str]
    requests: dict[str, int]


def snapshot(world: World) -> Snapshot:
    state_dir = world.settings.daemon.state_dir
    dump = _dump(world.settings.db_path)  # before listing: the dump's connection is gone
    return Snapshot(
        host=_tree(world.settings.host_dir),
        state_files=sorted(os.listdir(state_dir)) if state_dir.exists() else [],
        dump=dump,
        requests={name: len(sim.requests) for name, sim in world.sims.items()},
    )


def changes(world: World, before: Snapshot) -> list[str]:
    """What a dry run changed; empty when it changed nothing."""
    after = snapshot(world)
    found = []
    for path in sorted(before.host.keys() | after.host.keys()):
        if before.host.get(path) != after.host.get(path):
            found.append(f"host {path}: {before.host.get(path)} -> {after.host.get(path)}")
    if before.state_files != after.state_files:
        found.append(f"state dir: {before.state_files} -> {after.state_files}")
    if before.dump != after.dump:
        gone = [s for s in before.dump if s not in set(after.dump)]
        new = [s for s in after.dump if s not in set(before.dump)]
        found.append(f"state DB: -{gone[:3]} +{new[:3]}")
    for name, sim in world.sims.items():
        for record in sim.requests[before.requests[name] :]:
            if record.method not in READS or "/file/pop_" in record.path:
                found.append(f"{name}: {record.method} {record.path}")
    return found


def dry(world: World, job: str) -> RunResult:
    before = snapshot(world)
    result = run_job(REGISTRY[job], world.settings, trigger="test", dry_run=True)
    assert result.status == "dry-run", (job, result.error)
    assert changes(world, before) == [], job
    return result


def real(world: World, job: str) -> RunResult:
    result = run_job(REGISTRY[job], world.settings, trigger="test")
    assert result.status == "ok", (job, result.error)
    return result


# --- the tests -------------------------------------------------------------------------------


def test_every_job_dry_runs_without_a_trace(world: World) -> None:
    """Each job's dry run, on a state with work for it, leaves host files, state DB and
    remotes as they were, while reporting what it would do."""
    covered: list[str] = []

    def check(job: str) -> RunResult:
        covered.append(job)
        return dry(world, job)

    # No state DB yet: the dry run neither creates one nor touches the inbox...
    inbox = check("host.inbox")
    assert not world.settings.daemon.state_dir.exists()
    assert inbox.counts["files"] >= 8, inbox.counts
    assert inbox.counts["pulled"] > 100, inbox.counts
    # ...and the real run after it loads exactly what the dry run said it would.
    Store.open(world.settings.db_path).close()  # created and migrated, as `syncd once` does
    loaded = real(world, "host.inbox")
    assert (loaded.counts["files"], loaded.counts["pulled"], loaded.counts["rejected"]) == (
        inbox.counts["files"],
        inbox.counts["pulled"],
        inbox.counts["rejected"],
    )

    articles = check("instock.articles")
    assert articles.intents, "new host articles should be planned for Instock"
    real(world, "instock.articles")
    sending = check("outbox.send")  # pending article uploads: reported, not sent
    assert sending.counts["destinations_due"] == 1, sending.counts
    real(world, "outbox.send")

    for job in ("instock.inventory", "instock.moves", "instock.orders"):
        check(job)
        real(world, job)
    real(world, "outbox.send")

    pulled = check("dsorder.pull")
    assert pulled.intents, "submitted DSOrder orders should be planned for Instock"
    real(world, "dsorder.pull")
    real(world, "outbox.send")
    check("dsorder.progress")

    assert check("planning.import").counts, "host planning data should be planned"
    check("netstock.export")
    check("netstock.pop")
    assert len(world.netstock.queued("po")) == 1  # still there: a pop is never made dry
    check("oregon.siop")
    # A backfill request waiting (`syncd backfill` wrote it): the dry run takes it on the
    # copy; the real request stays requested.
    with Store.open(world.settings.db_path, migrate=False) as store:
        now = datetime.now(ZoneInfo("UTC")).replace(microsecond=0)
        request_backfill(
            store, "instock.moves", iso(now - timedelta(days=2)), iso(now), dry_run=False
        )
    backfilled = check("backfill.requests")
    assert backfilled.counts.get("backfills_done") == 1, backfilled.counts
    check("state.housekeeping")

    # A second inbox round: a file refused whole would go to rejects/, a good one to archive/.
    inbox_dir = world.settings.host_dir / "inbox"
    (inbox_dir / "stock-empty.csv").write_bytes(b"")
    (inbox_dir / "orders-late.csv").write_text(
        "action,order_id,line_id,article_id,qty\ncreate,HOST-0100,HOST-0100-1,NOSUCH,1\n"
    )
    again = check("host.inbox")
    assert again.counts["files"] == 2, again.counts

    assert sorted(set(covered)) == sorted(REGISTRY), "a job was not covered"


def test_a_dry_run_holds_no_write_lock_across_network_calls(world: World) -> None:
    """While a dry run waits on a slow remote answer, another process can write to the
    state DB at once."""
    if not world.settings.db_path.exists():
        real(world, "state.housekeeping")
    world.instock.faults.slow_seconds = 1.5
    world.instock.faults.script("*", ["slow"])
    fired = world.instock.faults.fired["slow"]
    done: list[RunResult] = []
    runner = threading.Thread(
        target=lambda: done.append(
            run_job(REGISTRY["instock.inventory"], world.settings, trigger="test", dry_run=True)
        )
    )
    runner.start()
    try:
        deadline = threading.Event()
        while world.instock.faults.fired["slow"] == fired:
            assert not deadline.wait(0.02)
            assert runner.is_alive(), "the slow request never came"
        with contextlib.closing(
            sqlite3.connect(world.settings.db_path, timeout=0.3, isolation_level=None)
        ) as other:
            other.execute("BEGIN IMMEDIATE")  # "database is locked" if the dry run held it
            other.execute("ROLLBACK")
    finally:
        runner.join(timeout=30)
    assert done, "the dry run did not end"
    assert done[0].status == "dry-run", done[0].error


def _counts(stdout: str, prefix: str) -> dict[str, int]:
    [line] = [line for line in stdout.splitlines() if line.startswith(prefix)]
    counts: dict[str, int] = json.loads(line.removeprefix(prefix))
    return counts


def test_syncd_once_dry_run_of_the_inbox_as_a_process(world: World) -> None:
    """`syncd once host.inbox --dry-run` (a real process) says what it would load and leaves
    the inbox as it was; the real `syncd once host.inbox` after it loads those rows."""
    inbox_dir = world.settings.host_dir / "inbox"
    (inbox_dir / "orders-later.csv").write_text(
        "action,order_id,line_id,article_id,qty\n"
        + "".join(f"create,LATE-{n},LATE-{n}-1,A{n},{n}\n" for n in range(1, 6))
    )
    before = snapshot(world)
    command = [
        sys.executable,
        "-m",
        "syncd.cli",
        "once",
        "host.inbox",
        "--config",
        str(world.config),
    ]
    env = clean_env()
    dry_run = subprocess.run(
        [*command, "--dry-run"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert dry_run.returncode == 0, dry_run.stderr
    assert "nothing was changed" in dry_run.stdout
    would = _counts(dry_run.stdout, "host.inbox: dry-run ")
    assert would["pulled"] >= 5, dry_run.stdout
    assert changes(world, before) == []
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert _counts(done.stdout, "host.inbox: ok ") == would
    assert not (inbox_dir / "orders-later.csv").exists()
