"""`planning.import` and `oregon.siop` as REAL `syncd once` processes, killed with SIGKILL.

One host data set (articles, suppliers, stock, open purchase orders, open customer orders,
sales) is loaded once by `host.inbox`. For each job an uncrashed run from that state against
a fresh simulator (in this process) is the reference. Each trial starts from the same state
and a fresh simulator, SIGKILLs `syncd once JOB` at a seeded point (odd trials then kill the
resumed run too, early in it), runs the job to completion in one worker process
(`crashkit.Worker`, one `syncd once` per run) and then once more: that last run must make no
request at all. Kill points (`crashkit`), drawn from a seeded random per trial
(`PLANNING_CRASH_SEED`; every failure names the seed, the trial and its kill points):

- `post-before` / `post-applied` / `post-answered`: the k-th import POST (the k-th SIOP POST)
  never arrives / is applied but its answer is lost / is answered and syncd is recording it
  (killed 0-10 ms after the answer);
- `status-applied` (planning): while the simulator answers the k-th job status poll;
- `commit`: right after the k-th COMMIT of the state DB;
- `time`: a random delay (up to the reference run's length) after the run's first request.

**planning.import** (import-jobs simulator: jobs stay PENDING `PENDING` s, then process at
`ROWS_PER_SECOND`, so kills land while jobs are PENDING/PROCESSING; `BATCH` rows per job).
The simulator refuses a few rows syncd's own check lets through (two catalog rows, one
inventory row, one order: a business rule the document does not list, made by changing the
row in transit) and one purchase order is refused locally (a line without unit cost). The
end state equals the reference's: every import store of the simulator (so no row is stored
twice or lost; a purchase order is created once and only ever replaced), the accepted rows
(`planning_import_accepted`), the refused ones (`planning_import_failed`) and the rejects
(each refused row exactly one open reject, never a second or a superseded one); every job
syncd recorded is COMPLETED, none is open and no sent rows are left, and every job the
simulator made has finished. Jobs recorded but still open at a kill are polled by the next
run (a status request for each after the kill) rather than submitted again.

Re-sends, as the job documents them: the job id is recorded only after the 202, so a kill
between the POST and that record leaves a job the simulator made and syncd never learnt of
(an "orphan"); the next run sends those rows again as a new job. The API upserts by natural
key, so this duplicates no data (checked above, and the jobs syncd recorded carry every row
exactly once, as in the reference). The re-send is bounded, checked by a test of its own: each
kill leaves at most `MAX_UNRECORDED` orphan (the batch in flight), made by the killed process,
with at most `BATCH` rows; nothing else is sent twice.

**oregon.siop** (SIOP simulator; `PAGE` items per request, `SIOP_BATCH` items per isolating
submit, i.e. two requests). The simulator refuses two materials (a 400 with problem details
naming the rows; the rest of the request is re-sent at once) and one material id is too long
(refused locally, never sent). The end state equals the reference's: the stored items (every
(material, period) with the reference's values), the accepted and refused items, and the
rejects (each refused item exactly one reject). No item whose acceptance (or refusal) a killed
run had recorded is sent again by a later run.

Re-sends, as the job does them: `_send` records the outcome of a whole isolating submit in one
transaction after its last answer. So a kill after a 201 and before that record re-sends, next
run, every item that submit had sent so far: not only the one request, but up to `SIOP_BATCH`
items (every request of the batch in flight, and an isolation round's re-send). Safe, a re-post
of a key replaces it; checked: per kill at most `SIOP_BATCH` accepted items went unrecorded,
and every item is accepted exactly once plus once per kill that left it unrecorded.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.sandbox.base import Request, Response
from syncd.sandbox.import_jobs import KINDS, ImportJobsSim
from syncd.sandbox.oregon_siop import OregonSiopSim
from tests.system.conftest import wait_until
from tests.system.crashkit import (
    Trap,
    Worker,
    canon,
    db_rows,
    describe,
    gather,
    restore,
    run_killed,
    run_ok,
    run_trials,
    syncd_env,
    trapped,
    wrap_routes,
    write_hook,
)

pytestmark = pytest.mark.system

SEED = int(os.environ.get("PLANNING_CRASH_SEED", "20261124"))
SIM_SEED = 11
PLANNING_TRIALS = 12
OREGON_TRIALS = 10
LAG = 0.005  # seconds between a simulator applying a request and answering it
PENDING = 0.08  # seconds a new import job stays PENDING
ROWS_PER_SECOND = 400.0  # then it is PROCESSING for rows / this
BATCH = 10  # planning.import rows per job
PAGE = 10  # SIOP items per request
SIOP_BATCH = 20  # oregon.siop items per isolating submit
SOLD_TO, SHIP_TO = "13035", "12256"

PLANNING = "planning.import"
OREGON = "oregon.siop"
IMPORT_POSTS = tuple(f"POST /api/import/{kind}" for kind in KINDS)
STATUS = "GET /api/import/status/{jobId}"
SIOP_POST = "POST /v1"
OPEN = ("PENDING", "PROCESSING")
PHASES = ("kill1", "kill2", "rerun", "quiet")  # who calls the simulator, in order
STATS_LOCK = threading.Lock()
# The first kill of trial n; odd trials kill the resumed run too (`AGAIN`).
PLANNING_MODES = (
    "post-applied",
    "commit",
    "time",
    "status-applied",
    "post-answered",
    "post-before",
)
OREGON_MODES = ("post-applied", "commit", "time", "post-answered", "post-before")
AGAIN = ("time", "commit")  # how a resumed run is killed
MAX_UNRECORDED = 1  # jobs made and not recorded per kill: the batch in flight

# --- host data ---------------------------------------------------------------------------------

ARTICLES = [f"P{n:04d}" for n in range(24)]
LONG_ID = "LONGMATERIALID0001X"  # 19 characters: SIOP materialId takes 18
TODAY = datetime.now(UTC).date()


def host_files() -> dict[str, list[str]]:
    def day(days_ago: int) -> str:
        return (TODAY - timedelta(days=days_ago)).isoformat()

    po_lines = []
    for po in range(1, 7):
        for line in (1, 2):
            article = ARTICLES[(po * 2 + line) % len(ARTICLES)]
            cost = "" if (po, line) == (4, 2) else f"{po}.25"  # PO-4: refused locally
            po_lines.append(
                f"PO-{po},S{po % 4 + 1},,{day(10)},OPEN,{line},{article},{po * 10},{po},{cost}"
            )
    return {
        "articles-0001.csv": ["article_id,name,attr.oregon_id"]
        + [f"{a},Part {n},{'OT-' + a if n % 3 == 0 else ''}" for n, a in enumerate(ARTICLES)]
        + [f"{LONG_ID},Part with a long id,"],
        "suppliers-0001.csv": ["supplier_id,name"] + [f"S{n},Supplier {n}" for n in range(1, 5)],
        "stock-0001.csv": ["article_id,location,qty,reorder_point"]
        + [f"{a},,{n * 2 + 1},{n % 4}" for n, a in enumerate(ARTICLES)]
        + [f"{a},B-01,{n}.5,1" for n, a in enumerate(ARTICLES) if n % 5 == 0]
        + [f"{LONG_ID},,3,1"],
        "purchase_orders-0001.csv": [
            "po_number,supplier_id,location,order_date,status,line_no,article_id,qty_ordered,"
            "qty_received,unit_cost",
            *po_lines,
        ],
        "orders-0001.csv": ["action,order_id,line_id,article_id,qty"]
        + [
            f"create,O{o},{line},{ARTICLES[(o * 3 + line) % len(ARTICLES)]},{o + line}"
            for o in range(1, 7)
            for line in range(1, 1 + (o % 2) + 1)
        ],
        "sales-0001.csv": ["transaction_id,line_id,sale_date,article_id,location,qty,channel"]
        + [
            f"T{i},1,{day(i * 7 % 50)},{ARTICLES[i % 16]},,{-1 if i == 13 else i % 5 + 1},"
            f"{'web' if i % 4 == 0 else ''}"
            for i in range(36)
        ]
        + [f"T99,1,{day(3)},{LONG_ID},,2,"],
    }


# The import-jobs simulator refuses these rows (syncd's own check lets them through): the row
# is changed in transit to something the API refuses, as a business rule would.
REFUSED_ROWS: dict[str, dict[str, Callable[[dict[str, Any]], None]]] = {
    "catalog": {
        "P0007": lambda row: row.update(name=0),
        "P0019": lambda row: row.update(name=0),
    },
    "inventory": {"P0011|WH": lambda row: row.update(quantityOnHand="n/a")},
    "orders": {"O3": lambda row: row["lines"][0].update(quantity="two")},
}
REFUSED_MATERIALS = ("P0005", "P0018")  # the SIOP simulator refuses these


@dataclass(frozen=True)
class Template:
    root: Path  # state and host dirs after `host.inbox` loaded the host files
    hook: Path  # the `sitecustomize` hook (commit counting, kill at commit k)
    base: Path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    base = tmp_path_factory.mktemp("planning-crash")
    root = base / "template"
    (root / "host" / "inbox").mkdir(parents=True)
    for name, lines in host_files().items():
        (root / "host" / "inbox" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = write_config(root, "")
    run_ok(config, "host.inbox")
    assert sorted(p.name for p in (root / "host" / "archive").rglob("*.csv")) == sorted(
        host_files()
    )
    assert db_rows(root / "state" / "syncd.db", "SELECT * FROM rejects") == []
    return Template(root, write_hook(base / "hook"), base)


def write_config(root: Path, connector: str) -> Path:
    path = root / "syncd.toml"
    path.write_text(
        f"""
[daemon]
state_dir = {json.dumps(str(root / "state"))}
site_timezone = "UTC"

[logging]
format = "json"
level = "warning"

[host]
dir = {json.dumps(str(root / "host"))}
settle_time = "0s"
{connector}
""",
        encoding="utf-8",
    )
    return path


# --- the simulators ------------------------------------------------------------------------------


class CrashingImportJobs(ImportJobsSim):
    """Import-jobs API that fires `trap`, refuses `REFUSED_ROWS` and logs who made each job."""

    lag = LAG
    trap: Trap | None = None

    def __init__(self) -> None:
        super().__init__(
            seed=SIM_SEED, pending_seconds=PENDING, rows_per_second=ROWS_PER_SECOND, retry_after=0
        )
        self.phase = "reference"  # who is calling: "kill1", "kill2", "rerun", "quiet"
        self.made_by: dict[str, str] = {}  # job id -> phase
        self.polled: list[tuple[str, str]] = []  # (phase, job id)
        self._lock = threading.Lock()
        wrap_routes(self.server, lambda handler: trapped(self, self._watched(handler)))

    def _watched(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            if request.method == "POST" and isinstance(request.json, dict):
                kind = request.path.rsplit("/", 1)[1]
                for rows in request.json.values():
                    for row in rows if isinstance(rows, list) else ():
                        refuse = REFUSED_ROWS.get(kind, {}).get(natural_key(kind, row))
                        if refuse is not None:
                            refuse(row)
            response = handler(request)
            with self._lock:
                if request.method == "POST" and response.status == 202:
                    self.made_by[json.loads(response.body)["jobId"]] = self.phase
                elif request.route == STATUS:
                    self.polled.append((self.phase, request.params["jobId"]))
            return response

        return handle

    def open_jobs(self) -> list[str]:
        self.tick()
        with self.state.lock:
            return [j.job_id for j in self.state.jobs.values() if j.open]

    def sent(self, job_ids: set[str] | None = None) -> Counter[tuple[str, str]]:
        """(endpoint, natural key) of every row of every job (or of `job_ids`)."""
        with self.state.lock:
            return Counter(
                (job.kind, natural_key(job.kind, row))
                for job in self.state.jobs.values()
                if job_ids is None or job.job_id in job_ids
                for row in job.rows
            )


def natural_key(kind: str, row: dict[str, Any]) -> str:
    """A row's key as syncd's `row_key` writes it (parts joined with `|`)."""
    parts = [row.get(f, "ALL" if f == "channel" else None) for f in KINDS[kind].key_fields]
    return "|".join(str(p) for p in parts)


class CrashingSiop(OregonSiopSim):
    """SIOP API that fires `trap`, refuses `REFUSED_MATERIALS` and logs every POST's items."""

    lag = LAG
    trap: Trap | None = None

    def __init__(self) -> None:
        super().__init__(seed=SIM_SEED, retry_after=0)
        self.phase = "reference"
        self.posts_log: list[tuple[str, int, list[tuple[Any, ...]]]] = []  # phase, status, keys
        self._lock = threading.Lock()
        for material in REFUSED_MATERIALS:
            self.refuse("materialId", material, f"The material {material} is not known.")
        wrap_routes(self.server, lambda handler: trapped(self, self._watched(handler)))

    def _watched(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            response = handler(request)
            body = request.json if isinstance(request.json, dict) else {}
            keys = [siop_key(item) for item in body.get("dataItems") or ()]
            with self._lock:
                self.posts_log.append((self.phase, response.status, keys))
            return response

        return handle

    def keys(self, phases: tuple[str, ...], status: int | None = None) -> Counter[tuple[Any, ...]]:
        with self._lock:
            return Counter(
                key
                for phase, got, keys in self.posts_log
                if phase in phases and (status is None or got == status)
                for key in keys
            )


def siop_key(item: dict[str, Any]) -> tuple[Any, ...]:
    return (
        item.get("soldToId"),
        item.get("shipToId"),
        item.get("materialId"),
        item.get("year"),
        item.get("month"),
        item.get("day") or 1,
    )


ALL_UPSERT = json.dumps(list(KINDS))


def planning_connector(sim: ImportJobsSim, *, upsert: str = ALL_UPSERT) -> str:
    """The trials take the API as upserting every import (the crash-safety of that reading);
    `upsert="[]"`-style overrides test the other one."""
    return f"""
[connectors.import_jobs]
enabled = true
base_url = "{sim.base_url}"
api_key = "{sim.api_key}"
options = {{ poll_interval = "20ms" }}
retry = {{ max_attempts = 3, initial_backoff = "20ms", max_backoff = "40ms" }}
timeouts = {{ connect = "2s", read = "5s" }}

[jobs."{PLANNING}"]
options = {{ batch_size = {BATCH}, site_location = "WH", demand_weeks_back = 8, on_missing_forecast = "api_default", upsert_endpoints = {upsert} }}
"""


def oregon_connector(sim: OregonSiopSim) -> str:
    return f"""
[connectors.oregon_siop]
enabled = true
base_url = "{sim.base_url}"
api_key = "{sim.api_key}"
page_size = {PAGE}
retry = {{ max_attempts = 3, initial_backoff = "20ms", max_backoff = "40ms" }}
timeouts = {{ connect = "2s", read = "5s" }}

[jobs."{OREGON}"]
options = {{ sold_to_id = "{SOLD_TO}", ship_to_id = "{SHIP_TO}", material_attribute = "oregon_id", periods_back = 2, batch_size = {SIOP_BATCH} }}
"""


# --- end states ----------------------------------------------------------------------------------


def observe_planning(sim: CrashingImportJobs, root: Path) -> dict[str, Any]:
    db = root / "state" / "syncd.db"
    seen: dict[str, Any] = {
        f"sim.{kind}": {canon(list(k)): canon(v) for k, v in sim.records(kind).items()}
        for kind in KINDS
    }
    seen["sim.po_created"] = sim.state.stats["po_created"]  # each PO created once
    seen["sim.open_jobs"] = sim.open_jobs()

    def rows(sql: str) -> list[str]:
        return sorted(canon(r) for r in db_rows(db, sql))

    seen["accepted"] = rows("SELECT endpoint, row_key, row_hash FROM planning_import_accepted")
    seen["failed"] = rows(
        "SELECT f.endpoint, f.row_key, f.row_hash, f.job_id IS NULL AS local, r.status "
        "FROM planning_import_failed f LEFT JOIN rejects r ON r.id = f.reject_id"
    )
    seen["rejects"] = Counter(
        canon([r["source"], r["reference"], r["field"], r["reason"], r["status"]])
        for r in db_rows(db, "SELECT * FROM rejects")
    )
    seen["jobs.status"] = sorted(
        {r["status"] for r in db_rows(db, "SELECT status FROM planning_import_jobs")}
    )
    seen["jobs.rows_left"] = rows_left(db)
    return seen


def rows_left(db: Path) -> int:
    """Rows kept with a job whose outcome is not recorded: in `planning_import_sent`, (from
    m0009 on) in the job row's `rows`, cleared when its outcome is recorded, or (from m0028
    on) a batch in `planning_import_batches`, deleted then, or when no job names it."""
    tables = {r["name"] for r in db_rows(db, "SELECT name FROM sqlite_master")}
    if "planning_import_sent" in tables:
        return db_rows(db, "SELECT count(*) AS n FROM planning_import_sent")[0]["n"]
    if "planning_import_batches" in tables:
        return db_rows(db, "SELECT count(*) AS n FROM planning_import_batches")[0]["n"]
    sql = "SELECT count(*) AS n FROM planning_import_jobs WHERE rows IS NOT NULL"
    return db_rows(db, sql)[0]["n"]


def observe_oregon(sim: CrashingSiop, root: Path) -> dict[str, Any]:
    db = root / "state" / "syncd.db"
    seen: dict[str, Any] = {"sim.items": {canon(list(k)): canon(v) for k, v in sim.items().items()}}

    def rows(sql: str) -> list[str]:
        return sorted(canon(r) for r in db_rows(db, sql))

    seen["accepted"] = rows(
        "SELECT sold_to, ship_to, material_id, year, month, day, item_hash, item "
        "FROM oregon_siop_accepted"
    )
    seen["failed"] = rows(
        "SELECT f.material_id, f.year, f.month, f.day, f.item_hash, r.status "
        "FROM oregon_siop_failed f LEFT JOIN rejects r ON r.id = f.reject_id"
    )
    seen["rejects"] = Counter(
        canon([r["source"], r["reference"], r["field"], r["reason"], r["status"]])
        for r in db_rows(db, "SELECT * FROM rejects")
    )
    return seen


def compare(want: dict[str, Any], got: dict[str, Any]) -> list[str]:
    return [
        f"{key}: {describe(want.get(key), got.get(key))}"
        for key in sorted(set(want) | set(got))
        if want.get(key) != got.get(key)
    ]


def open_rejects_twice(db: Path) -> list[dict[str, Any]]:
    """References with more than one open reject (a refused row recorded twice)."""
    return db_rows(
        db,
        "SELECT reference, count(*) AS n FROM rejects WHERE status = 'open' "
        "GROUP BY reference HAVING n > 1",
    )


# --- the reference -------------------------------------------------------------------------------


@dataclass
class Reference:
    template: Template
    end: dict[str, Any]
    counts: dict[str, int]  # requests per kind and COMMITs of the uncrashed run
    seconds: float  # from its first request to its last
    sent: Counter[Any] = field(default_factory=Counter)

    def half(self) -> Reference:
        """Kill points for a resumed run, which has less left to do: its first half."""
        counts = {k: max(1, v // 2) for k, v in self.counts.items()}
        return dataclasses.replace(self, counts=counts, seconds=self.seconds / 2)


def reference_run(
    template: Template, name: str, sim: Any, connector: str, job: str
) -> tuple[Path, dict[str, Any]]:
    """The uncrashed run, and a second one that must make no request; (root, its result)."""
    root = template.base / name
    restore(template.root, root)
    config = write_config(root, connector)
    worker = Worker(root, config, template.hook)
    try:
        result = worker.run(job)
        assert result["code"] == 0, worker.tail()
        sim.phase = "quiet"
        before = sim.count()
        assert worker.run(job)["code"] == 0, worker.tail()
        assert sim.count() == before, "a second run made requests"
    finally:
        worker.close()
    return root, result


def span(sim: Any) -> float:
    stamps = [r.timestamp for r in sim.requests]
    return max(stamps) - min(stamps)


def planning_reference(template: Template) -> Reference:
    with CrashingImportJobs() as sim:
        root, result = reference_run(
            template, "planning-reference", sim, planning_connector(sim), PLANNING
        )
        routes = Counter(r.route for r in sim.requests)
        counts = {
            "post": sum(routes[r] for r in IMPORT_POSTS),
            "status": routes[STATUS],
            "commit": result["commit"],
        }
        wait_until(lambda: not sim.open_jobs(), 5, "the reference's jobs to finish")
        ref = Reference(template, observe_planning(sim, root), counts, span(sim), sim.sent())
    end = ref.end
    assert all(n == 1 for n in ref.sent.values()), ref.sent  # every row sent once
    assert end["jobs.status"] == ["COMPLETED"], end["jobs.status"]
    refused = [json.loads(r) for r in end["rejects"]]
    assert sorted(r[0] for r in refused) == [
        "planning:catalog",
        "planning:catalog",
        "planning:inventory",
        "planning:orders",
        "planning:purchase-orders",
    ], refused
    assert all(r[4] == "open" for r in refused), refused
    assert len(end["sim.catalog"]) == len(ARTICLES) + 1 - 2
    assert len(end["sim.purchase-orders"]) == 5
    assert end["sim.po_created"] == 5
    assert len(end["sim.demand-history"]) > 2 * BATCH
    print(f"\nplanning reference: {counts}, {ref.seconds:.2f}s of requests")
    return ref


def oregon_reference(template: Template) -> Reference:
    with CrashingSiop() as sim:
        root, result = reference_run(
            template, "oregon-reference", sim, oregon_connector(sim), OREGON
        )
        counts = {"post": sim.count(SIOP_POST), "commit": result["commit"]}
        ref = Reference(
            template, observe_oregon(sim, root), counts, span(sim), sim.keys(("reference",), 201)
        )
    end = ref.end
    assert all(n == 1 for n in ref.sent.values()), ref.sent  # every item accepted once
    assert len(end["sim.items"]) == len(ARTICLES) * 3 - len(REFUSED_MATERIALS) * 3
    reasons = Counter(json.loads(r)[2] for r in end["rejects"])
    assert reasons == {"materialId": 9}, reasons  # 2 refused remotely, 1 locally, x 3 periods
    assert counts["post"] > len(end["sim.items"]) // PAGE  # isolation rounds
    print(f"\noregon reference: {counts}, {ref.seconds:.2f}s of requests")
    return ref


# --- kills -----------------------------------------------------------------------------------------


def choose_kill(
    rng: random.Random, mode: str, ref: Reference, posts: tuple[str, ...]
) -> tuple[Trap | None, str, str]:
    """(trap, CRASH_TRIALS_KILL_AT, description) for one kill of `mode`."""
    if mode == "commit":
        nth = rng.randint(1, ref.counts["commit"])
        return None, f"commit:{nth}", f"after COMMIT {nth} of {ref.counts['commit']}"
    if mode == "time":
        delay = rng.uniform(0, ref.seconds)
        routes = (*posts, STATUS)
        trap = Trap(routes, 1, "answered", delay=delay)
        return trap, "", f"{delay * 1000:.0f} ms after its first request"
    target, moment = mode.split("-")
    if target == "status":
        nth = rng.randint(1, max(1, ref.counts["status"] * 3 // 4))
        return Trap((STATUS,), nth, moment), "", f"status poll {nth} {moment}"
    nth = rng.randint(1, ref.counts["post"])
    delay = rng.uniform(0, 0.01) if moment == "answered" else 0.0
    return Trap(posts, nth, moment, delay=delay), "", f"POST {nth} {moment}"


def kill(
    sim: Any, config: Path, job: str, ref: Reference, rng: random.Random, mode: str, phase: str
) -> tuple[bool, str]:
    trap, kill_at, how = choose_kill(
        rng, mode, ref, IMPORT_POSTS if job == PLANNING else (SIOP_POST,)
    )
    sim.phase = phase
    code = run_killed(sim, config, job, trap, None, syncd_env(ref.template.hook, kill_at))
    assert code in (0, -9), f"{phase} {how}: exit code {code}"
    return code == -9, f"{phase} {how}" + ("" if code == -9 else " (finished first)")


# --- planning.import ---------------------------------------------------------------------------


@dataclass
class Outcome:
    """One planning trial: its kill points, and what differed from the reference."""

    context: str  # the seed, the trial and its kill points
    problems: list[str]  # end state, resumed jobs, rejects
    resends: list[str]  # re-sends beyond the batch in flight at a kill
    stats: Counter[str]
    summary: str


def planning_trial(ref: Reference, n: int) -> Outcome:
    stats: Counter[str] = Counter()
    rng = random.Random(f"{SEED}:planning:{n}")
    root = ref.template.base / f"planning-{n}"
    restore(ref.template.root, root)
    db = root / "state" / "syncd.db"
    context = f"PLANNING_CRASH_SEED={SEED} planning trial {n}:"
    kills: dict[str, str] = {}  # phase -> how it was killed
    with CrashingImportJobs() as sim:
        config = write_config(root, planning_connector(sim))
        worker = Worker(root, config, ref.template.hook)  # starts (imports) while victims run
        left_open: dict[str, str] = {}  # job id recorded open at a kill -> that kill
        try:
            for k in range(1 + n % 2):
                phase = f"kill{k + 1}"
                if k == 0:
                    landed, how = kill(
                        sim,
                        config,
                        PLANNING,
                        ref,
                        rng,
                        PLANNING_MODES[n % len(PLANNING_MODES)],
                        phase,
                    )
                else:  # the resumed run: less work left, so a point early in it
                    landed, how = kill(
                        sim, config, PLANNING, ref.half(), rng, rng.choice(AGAIN), phase
                    )
                kills[phase] = how
                open_in_sim = len(sim.open_jobs())
                recorded_open = [
                    r["job_id"]
                    for r in db_rows(
                        db, "SELECT job_id FROM planning_import_jobs WHERE status IN (?, ?)", OPEN
                    )
                ]
                left_open.update((job_id, phase) for job_id in recorded_open)
                context += (
                    f" {how} [jobs open: {open_in_sim} in the API, {len(recorded_open)} recorded];"
                )
                stats[f"landed:{phase}"] += landed
                stats["open_in_api_at_kill"] += landed and open_in_sim > 0
                stats["recorded_open_at_kill"] += landed and bool(recorded_open)

            sim.phase = "rerun"
            for _ in range(3):
                result = worker.run(PLANNING)
                assert result["code"] == 0, f"{context} rerun failed: {result}\n{worker.tail()}"
                if not db_rows(
                    db, "SELECT 1 FROM planning_import_jobs WHERE status IN (?, ?)", OPEN
                ):
                    break
            else:
                pytest.fail(f"{context} jobs still open after 3 runs")
            sim.phase = "quiet"
            before = sim.count()
            assert worker.run(PLANNING)["code"] == 0, f"{context}\n{worker.tail()}"
            assert sim.count() == before, f"{context} a run after completion made requests"
        finally:
            worker.close()
        wait_until(lambda: not sim.open_jobs(), 5, f"{context} the API's jobs to finish")
        problems = compare(ref.end, observe_planning(sim, root))

        # Every row went exactly once through the jobs syncd recorded, as in the reference.
        recorded = {r["job_id"] for r in db_rows(db, "SELECT job_id FROM planning_import_jobs")}
        in_recorded = sim.sent(recorded)
        if in_recorded != ref.sent:
            problems.append(f"rows in recorded jobs: {describe(ref.sent, in_recorded)}")
        # Jobs left open at a kill are polled again by a later run, not submitted again.
        for job_id, phase in left_open.items():
            later = {
                p
                for p, polled in sim.polled
                if polled == job_id and PHASES.index(p) > PHASES.index(phase)
            }
            if not later:
                problems.append(f"job {job_id} left open at {phase} was never polled again")
        twice = open_rejects_twice(db)
        if twice:
            problems.append(f"open rejects twice: {twice}")

        # Re-sends: a job the API made and syncd never recorded is sent again next run. Only
        # the batch in flight at a kill may be such a job: one per kill, at most BATCH rows.
        with sim.state.lock:
            orphans = {i: j for i, j in sim.state.jobs.items() if i not in recorded}
        resends = []
        for phase in sorted({sim.made_by[i] for i in orphans}):
            jobs = [j for i, j in orphans.items() if sim.made_by[i] == phase]
            rows = sum(len(j.rows) for j in jobs)
            if phase not in kills:
                resends.append(f"{phase} left {len(jobs)} job(s) unrecorded ({rows} rows)")
            elif len(jobs) > MAX_UNRECORDED or any(len(j.rows) > BATCH for j in jobs):
                resends.append(
                    f"{kills[phase]}: left {len(jobs)} job(s) the API made and syncd "
                    f"never recorded: their {rows} rows were sent again by the next run"
                )
        resent = sim.sent(set(orphans))
        if set(resent) - set(ref.sent):
            problems.append(f"rows sent that the reference never sent: {resent}")
    stats["orphans"] += len(orphans)
    stats["resumed"] += len(left_open)
    summary = f"{context} {len(orphans)} unrecorded job(s) re-sent {sum(resent.values())} row(s)"
    return Outcome(context, problems, resends, stats, summary)


@pytest.fixture(scope="module")
def planning_outcomes(template: Template) -> list[Outcome]:
    """The planning trials, run once for the tests below."""
    ref = planning_reference(template)
    outcomes = gather([functools.partial(planning_trial, ref, n) for n in range(PLANNING_TRIALS)])
    failed = [str(value) for ok, value in outcomes if not ok]
    assert not failed, "\n\n".join(failed)
    return [value for ok, value in outcomes if isinstance(value, Outcome)]


def test_planning_import_end_state_survives_kill_9(planning_outcomes: list[Outcome]) -> None:
    """kill -9 `syncd once planning.import` at seeded points: the end state is the uncrashed
    one, no data twice, jobs open at a kill resumed, each refused row one reject."""
    print("\n" + "\n".join(o.summary for o in planning_outcomes))
    stats = sum((o.stats for o in planning_outcomes), Counter())
    print(f"planning kills: {dict(stats)}")
    problems = [
        o.context + "\n  " + "\n  ".join(o.problems) for o in planning_outcomes if o.problems
    ]
    assert not problems, "\n\n".join(problems)
    assert stats["landed:kill1"] >= PLANNING_TRIALS - 2, stats  # a timed one may come late
    assert stats["landed:kill2"] >= 2, stats
    assert stats["orphans"] >= 2, stats  # a POST applied, its answer lost: re-sent
    assert stats["resumed"] >= 2, stats  # a job recorded and open: polled by the next run
    assert stats["open_in_api_at_kill"] >= 3, stats  # kills land while jobs are PENDING


def test_planning_import_resends_at_most_the_batch_in_flight(
    planning_outcomes: list[Outcome],
) -> None:
    """A kill between an import POST and the record of its job id re-sends that batch (and
    only it) next run, as the job documents."""
    found = [o.context + "\n  " + "\n  ".join(o.resends) for o in planning_outcomes if o.resends]
    assert not found, (
        f"re-sends beyond the batch in flight ({MAX_UNRECORDED} job of at most {BATCH} rows "
        "per kill):\n" + "\n\n".join(found)
    )


@pytest.mark.parametrize("kind", ["orders", "demand-history"])
def test_planning_import_adds_nothing_twice_after_kill_9_where_the_api_appends(
    template: Template, kind: str
) -> None:
    """An API that adds orders and weekly demand again when they are sent again (the other
    reading of the document): kill -9 while the first import of `kind` is applied, its
    answer lost with the process. Later runs never send that batch again: every row of
    `kind` went to the API once and is stored once; the batch is held as rejects (one per
    row, retryable) and an alert is open."""
    root = template.base / f"append-{kind}"
    restore(template.root, root)
    db = root / "state" / "syncd.db"
    with CrashingImportJobs() as sim:
        sim.append = {"orders", "demand-history"}
        upsert = json.dumps([k for k in KINDS if k not in sim.append])
        config = write_config(root, planning_connector(sim, upsert=upsert))
        trap = Trap((f"POST /api/import/{kind}",), 1, "applied")
        code = run_killed(sim, config, PLANNING, trap, None, syncd_env(template.hook))
        assert code == -9, "the trap did not fire"
        with sim.state.lock:
            [first] = [j for j in sim.state.jobs.values() if j.kind == kind]
            held_keys = sorted(natural_key(kind, row) for row in first.rows)
        for _ in range(3):
            run_ok(config, PLANNING)
            if not db_rows(db, "SELECT 1 FROM planning_import_jobs WHERE status IN (?, ?)", OPEN):
                break
        before = sim.count()
        run_ok(config, PLANNING)
        assert sim.count() == before, "a run after completion made requests"
        wait_until(lambda: not sim.open_jobs(), 5, "the API's jobs to finish")

        sent = Counter({k: n for (endpoint, k), n in sim.sent().items() if endpoint == kind})
        assert sent, "nothing sent"
        assert set(sent.values()) == {1}, sent  # each row sent once, ever
        assert sim.state.stats["rows_appended"] == 0
        assert not [k for k in sim.records(kind) if str(k[-1]).startswith("#")]
        held = db_rows(
            db,
            "SELECT f.row_key FROM planning_import_failed f JOIN rejects r ON r.id = f.reject_id "
            "WHERE f.endpoint = ? AND r.status = 'open' AND r.reason LIKE 'not sent again%' "
            "ORDER BY f.row_key",
            [kind],
        )
        assert [r["row_key"] for r in held] == held_keys
        statuses = db_rows(db, "SELECT status FROM planning_import_jobs WHERE endpoint = ?", [kind])
        assert "AMBIGUOUS" in {r["status"] for r in statuses}
        alerts = db_rows(
            db,
            "SELECT subject FROM alerts WHERE kind = 'planning_import_ambiguous' "
            "AND resolved_at IS NULL",
        )
        assert [a["subject"] for a in alerts] == [kind]


# --- oregon.siop ---------------------------------------------------------------------------------


def recorded_keys(db: Path) -> set[tuple[Any, ...]]:
    return {
        tuple(r.values())
        for r in db_rows(
            db,
            "SELECT sold_to, ship_to, material_id, year, month, day FROM oregon_siop_accepted "
            "UNION SELECT sold_to, ship_to, material_id, year, month, day FROM oregon_siop_failed",
        )
    }


def accepted_keys(db: Path) -> set[tuple[Any, ...]]:
    return {
        tuple(r.values())
        for r in db_rows(
            db, "SELECT sold_to, ship_to, material_id, year, month, day FROM oregon_siop_accepted"
        )
    }


def oregon_trial(ref: Reference, n: int, totals: Counter[str]) -> str:
    stats: Counter[str] = Counter()
    rng = random.Random(f"{SEED}:oregon:{n}")
    root = ref.template.base / f"oregon-{n}"
    restore(ref.template.root, root)
    db = root / "state" / "syncd.db"
    context = f"PLANNING_CRASH_SEED={SEED} oregon trial {n}:"
    problems: list[str] = []
    with CrashingSiop() as sim:
        config = write_config(root, oregon_connector(sim))
        worker = Worker(root, config, ref.template.hook)  # starts (imports) while victims run
        kills: list[tuple[str, set[tuple[Any, ...]], set[tuple[Any, ...]]]] = []
        try:
            for k in range(1 + n % 2):
                phase = f"kill{k + 1}"
                if k == 0:
                    mode = OREGON_MODES[n % len(OREGON_MODES)]
                    landed, how = kill(sim, config, OREGON, ref, rng, mode, phase)
                else:
                    landed, how = kill(
                        sim, config, OREGON, ref.half(), rng, rng.choice(AGAIN), phase
                    )
                recorded = recorded_keys(db)
                unrecorded = set(sim.keys((phase,), 201)) - accepted_keys(db)
                kills.append((phase, recorded, unrecorded))
                context += f" {how} [{len(unrecorded)} accepted item(s) unrecorded];"
                stats[f"landed:{phase}"] += landed
                stats["unrecorded"] += len(unrecorded)
                if len(unrecorded) > SIOP_BATCH:
                    problems.append(f"{phase}: {len(unrecorded)} accepted items were not recorded")

            sim.phase = "rerun"
            result = worker.run(OREGON)
            assert result["code"] == 0, f"{context} rerun failed: {result}\n{worker.tail()}"
            sim.phase = "quiet"
            before = sim.count()
            assert worker.run(OREGON)["code"] == 0, f"{context}\n{worker.tail()}"
            assert sim.count() == before, f"{context} a run after completion made requests"
        finally:
            worker.close()
        problems += compare(ref.end, observe_oregon(sim, root))
        phases = PHASES[:3]
        for index, (phase, recorded, _) in enumerate(kills):
            again = set(sim.keys(PHASES[index + 1 :])) & recorded
            if again:
                problems.append(f"sent again after {phase} had recorded them: {sorted(again)[:3]}")
        expected = ref.sent + Counter(key for _, _, unrecorded in kills for key in unrecorded)
        accepted = sim.keys(phases, 201)
        if accepted != expected:
            problems.append(f"acceptances per item: {describe(expected, accepted)}")
        twice = open_rejects_twice(db)
        if twice:
            problems.append(f"open rejects twice: {twice}")
    assert not problems, f"{context}\n  " + "\n  ".join(problems)
    resent = sum(len(u) for _, _, u in kills)
    with STATS_LOCK:
        totals.update(stats)
    return f"{context} ok; {resent} item(s) accepted twice"


def test_oregon_siop_survives_kill_9(template: Template) -> None:
    """kill -9 `syncd once oregon.siop` at seeded points; the end state is the uncrashed one."""
    ref = oregon_reference(template)
    stats: Counter[str] = Counter()
    run_trials([functools.partial(oregon_trial, ref, n, stats) for n in range(OREGON_TRIALS)])
    print(f"oregon kills: {dict(stats)}")
    assert stats["landed:kill1"] >= OREGON_TRIALS - 2, stats  # a timed one may come late
    assert stats["landed:kill2"] >= 2, stats
    assert stats["unrecorded"] >= 1, stats  # a 201 lost to a kill: re-sent, replaced
