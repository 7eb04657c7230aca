"""Contract of the import-jobs CLIENT against the running simulator over loopback HTTP (no mocks).

Each test builds a real `ImportJobsClient` from an `ApiKeyConnectorConfig` pointing at an
`ImportJobsSim`. Both share one `ManualClock`: the client's sleeps advance it, so jobs move
through PENDING and PROCESSING in simulated time and polling costs no real time.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from syncd.config import ApiKeyConnectorConfig
from syncd.connectors.import_jobs import (
    COMPLETED,
    FAILED,
    KINDS,
    CatalogRow,
    DemandHistoryRow,
    ImportJob,
    ImportJobsClient,
    ImportRow,
    InventoryLevelRow,
    JobTimeoutError,
    OrderLine,
    OrderRow,
    PurchaseOrderLine,
    PurchaseOrderRow,
    SupplierRow,
    UnsureSubmitError,
    parse_error,
    parse_rows,
    row_key,
)
from syncd.errors import AuthError, PermanentError, RetryableError
from syncd.sandbox.import_jobs import (
    DEFAULT_API_KEY,
    DEFAULT_READ_ONLY_KEY,
    GARBLED_400,
    HTML_502,
    READ,
    WRITE,
    AnswerShape,
    ImportJobsSim,
    ManualClock,
)
from tests.contract.clientkit import ClientContract, Connect

START = datetime(2025, 3, 10, 9, 0, tzinfo=UTC).timestamp()
STATUS = "GET /api/import/status/{jobId}"
ENVELOPE_KEYS = {
    "jobId",
    "status",
    "rowCount",
    "processedCount",
    "failedCount",
    "errors",
    "completedAt",
}


# --- fixtures and helpers ------------------------------------------------------------------


class Sleeper:
    """The client's sleep: records each delay and moves the shared clock instead of waiting."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sim(clock: ManualClock) -> Iterator[ImportJobsSim]:
    with ImportJobsSim(
        seed=7, clock=clock, pending_seconds=1.0, rows_per_second=2.0, slow_seconds=0.6
    ) as running:
        yield running


@pytest.fixture
def sleeper(clock: ManualClock) -> Sleeper:
    return Sleeper(clock)


def make_client(
    sim: ImportJobsSim, sleeper: Sleeper, *, api_key: str | None = None, **extra: Any
) -> ImportJobsClient:
    """A client configured the way the daemon configures it, pointed at `sim`."""
    config = ApiKeyConnectorConfig.model_validate(
        {
            "enabled": True,
            "base_url": sim.base_url,
            "api_key": sim.api_key if api_key is None else api_key,
            "retry": {"max_attempts": 4, "initial_backoff": 0.5, "max_backoff": 4},
            "timeouts": {"read": 0.3},
            **extra,
        }
    )
    return ImportJobsClient(config, sleep=sleeper, clock=sleeper.clock)


@pytest.fixture
def client(sim: ImportJobsSim, sleeper: Sleeper) -> Iterator[ImportJobsClient]:
    with make_client(sim, sleeper) as import_jobs:
        yield import_jobs


def po(number: str, *lines: tuple[str, float, float], supplier: str = "SUP-1") -> PurchaseOrderRow:
    return PurchaseOrderRow(
        externalPoNumber=number,
        supplierId=supplier,
        destinationLocationId="WH1",
        lines=[PurchaseOrderLine(skuId=s, quantity=q, unitCost=c) for s, q, c in lines],
    )


VALID_ROWS: dict[str, list[ImportRow]] = {
    "catalog": [
        CatalogRow(externalId="SKU-1", name="Chain 3/8", brand="Oregon"),
        CatalogRow(externalId="SKU-2"),
    ],
    "inventory": [
        InventoryLevelRow(skuId="SKU-1", locationId="WH1", quantityOnHand=12, reorderPoint=4),
        InventoryLevelRow(skuId="SKU-2", locationId="WH1", quantityOnHand=1.5),
    ],
    "suppliers": [SupplierRow(externalId="SUP-1", name="Oregon Tool")],
    "purchase-orders": [po("PO-1", ("SKU-1", 10, 2.5), ("SKU-2", 4, 1))],
    "orders": [
        OrderRow(
            externalOrderId="SO-1", lines=[OrderLine(skuId="SKU-1", quantity=2, locationId="WH1")]
        )
    ],
    "demand-history": [
        DemandHistoryRow(
            skuId="SKU-1", locationId="WH1", weekStarting=date(2025, 3, 3), actualDemand=7
        ),
        DemandHistoryRow(skuId="SKU-1", locationId="WH1", weekStarting=date(2025, 3, 10)),
    ],
}


# --- every endpoint ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_each_endpoint_accepts_with_202_and_completes(
    kind: str, client: ImportJobsClient, sim: ImportJobsSim
) -> None:
    """Every documented import answers 202 with a PENDING job that completes with all rows stored."""
    rows = VALID_ROWS[kind]
    job = client.submit(kind, rows)
    assert sim.requests[-1].status == 202
    assert sim.requests[-1].path == f"/api/import/{kind}"
    assert (job.status, job.rowCount, job.processedCount, job.failedCount) == (
        "PENDING",
        len(rows),
        0,
        0,
    )
    assert job.completedAt is None
    final = client.wait_for_job(job.jobId)
    assert final.status == COMPLETED
    assert (final.processedCount, final.failedCount, final.accepted_count) == (
        len(rows),
        0,
        len(rows),
    )
    assert final.errors == []
    assert final.completedAt is not None
    assert final.completedAt.tzinfo is not None
    assert len(sim.records(kind)) == len(rows)


def test_envelope_and_status_are_exactly_the_documented_job(sim: ImportJobsSim) -> None:
    """The 202 envelope and the status answer carry exactly the documented job fields."""
    with httpx.Client(base_url=sim.base_url, headers=sim.auth_headers(), timeout=5) as http:
        accepted = http.post("/api/import/suppliers", json={"suppliers": [{"externalId": "S1"}]})
        assert accepted.status_code == 202
        envelope = accepted.json()
        assert set(envelope) == ENVELOPE_KEYS
        assert envelope["status"] == "PENDING"
        status = http.get(f"/api/import/status/{envelope['jobId']}")
        assert status.status_code == 200
        assert set(status.json()) == ENVELOPE_KEYS
        assert status.headers["X-Request-ID"]


def test_typed_rows_send_document_names_and_leave_defaults_to_the_api(
    client: ImportJobsClient, sim: ImportJobsSim
) -> None:
    """Unset optional fields are not sent, so the documented defaults apply; unknown fields pass through."""
    client.wait_for_job(client.import_catalog(VALID_ROWS["catalog"]).jobId)
    client.wait_for_job(client.import_inventory(VALID_ROWS["inventory"]).jobId)
    client.wait_for_job(client.import_demand_history(VALID_ROWS["demand-history"]).jobId)
    client.wait_for_job(client.import_purchase_orders(VALID_ROWS["purchase-orders"]).jobId)
    catalog = sim.records("catalog")
    assert catalog[("SKU-1",)]["brand"] == "Oregon"
    assert catalog[("SKU-2",)]["name"] == "SKU-2"  # name defaults to externalId
    level = sim.records("inventory")[("SKU-2", "org_sandbox-WH1")]  # {organizationId}-{locationId}
    assert (level["quantityOnHand"], level["quantityReserved"], level["reorderPoint"]) == (
        1.5,
        0,
        0,
    )
    demand = sim.records("demand-history")
    assert demand[("SKU-1", "WH1", "2025-03-10", "ALL")]["actualDemand"] == 0
    assert demand[("SKU-1", "WH1", "2025-03-03", "ALL")]["forecastedDemand"] == 7
    assert sim.records("purchase-orders")[("PO-1",)]["status"] == "PENDING"


def test_submit_refuses_an_empty_batch_without_a_request(
    client: ImportJobsClient, sim: ImportJobsSim
) -> None:
    """An empty batch is refused locally: a cycle with nothing to import makes no request."""
    with pytest.raises(ValueError, match="nothing to import"):
        client.import_suppliers([])
    with pytest.raises(ValueError, match="unknown import"):
        client.submit("products", [{"externalId": "x"}])
    assert sim.count() == 0


# --- polling -------------------------------------------------------------------------------


def test_polling_backs_off_until_completed(
    client: ImportJobsClient, sim: ImportJobsSim, sleeper: Sleeper
) -> None:
    """wait_for_job polls through PENDING and PROCESSING with doubling delays capped at max_backoff."""
    rows = [CatalogRow(externalId=f"SKU-{n}") for n in range(30)]  # 1 s pending + 15 s at 2 rows/s
    job = client.import_catalog(rows)
    seen: list[tuple[str, int]] = []
    final = client.wait_for_job(
        job.jobId, on_poll=lambda j: seen.append((j.status, j.processedCount))
    )
    assert final.status == COMPLETED
    assert sleeper.delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert [s for s, _ in seen] == ["PENDING", "PENDING", *["PROCESSING"] * 5, COMPLETED]
    processed = [n for _, n in seen]
    assert processed == sorted(processed)
    assert processed[2:7] == [1, 5, 13, 21, 29]  # 2 rows/s from t=1 s, polled at 1.5, 3.5, ...
    assert sim.count(STATUS) == len(seen)


def test_wait_for_job_gives_up_after_timeout_with_last_state(
    clock: ManualClock, sleeper: Sleeper
) -> None:
    """A job that never finishes raises JobTimeoutError (retryable) carrying its last state."""
    with ImportJobsSim(clock=clock, auto=False) as sim, make_client(sim, sleeper) as client:
        job = client.import_suppliers([SupplierRow(externalId="S1")])
        with pytest.raises(JobTimeoutError) as caught:
            client.wait_for_job(job.jobId, timeout=5, poll=1)
    assert isinstance(caught.value, RetryableError)
    assert caught.value.code == "job_timeout"
    assert caught.value.job.status == "PENDING"
    assert sleeper.delays == [1, 2, 2]  # the last delay is cut to the deadline
    assert sum(sleeper.delays) == 5


def test_process_jobs_lever_moves_jobs_by_hand(clock: ManualClock, sleeper: Sleeper) -> None:
    """With auto=False only process_jobs moves a job: partly (PROCESSING), then to the end."""
    with ImportJobsSim(clock=clock, auto=False) as sim, make_client(sim, sleeper) as client:
        job = client.import_suppliers([SupplierRow(externalId=f"S{n}") for n in range(5)])
        clock.advance(3600)
        assert client.job_status(job.jobId).status == "PENDING"
        assert sim.process_jobs(rows=2) == 0
        partial = client.job_status(job.jobId)
        assert (partial.status, partial.processedCount) == ("PROCESSING", 2)
        assert sim.records("suppliers") == {}  # rows are committed when the job finishes
        assert sim.process_jobs() == 1
        assert client.wait_for_job(job.jobId).status == COMPLETED
        assert len(sim.records("suppliers")) == 5


def wait_until(condition: Callable[[], bool], seconds: float = 3.0) -> bool:
    """Poll a condition in real time (for what happens on the simulator's own threads)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_background_worker_finishes_jobs_in_real_time() -> None:
    """In background mode jobs progress on the real clock and land without anyone polling."""
    with ImportJobsSim(pending_seconds=0.05, rows_per_second=200) as sim:
        sim.start_worker(interval=0.02)
        with httpx.Client(base_url=sim.base_url, headers=sim.auth_headers(), timeout=5) as http:
            http.post("/api/import/suppliers", json={"suppliers": [{"externalId": "S1"}]})
        assert wait_until(lambda: sim.state.stats["jobs_completed"] == 1)
        assert sim.count(STATUS) == 0


# --- row-level errors ----------------------------------------------------------------------


def test_bad_rows_complete_with_row_errors_tied_to_host_rows(
    client: ImportJobsClient, sim: ImportJobsSim
) -> None:
    """A batch with some invalid rows COMPLETES; failedCount and row errors map back to host rows."""
    host_rows = [
        ("host-1", {"skuId": "SKU-1", "locationId": "WH1", "quantityOnHand": 3}),
        ("host-2", {"skuId": "SKU-2"}),  # locationId missing
        ("host-3", {"skuId": "SKU-3", "locationId": "WH1", "quantityOnHand": "many"}),
        ("host-4", {"skuId": "SKU-4", "locationId": "WH2", "extra": True}),
        ("host-5", ["not", "an", "object"]),
    ]
    job = client.submit("inventory", [row for _, row in host_rows])
    final = client.wait_for_job(job.jobId)
    assert final.status == COMPLETED
    assert (final.rowCount, final.processedCount, final.failedCount) == (5, 5, 3)
    assert final.accepted_count == 2
    rejected = final.rejected([host_id for host_id, _ in host_rows])
    assert [host_id for host_id, _ in rejected] == ["host-2", "host-3", "host-5"]
    by_host = dict(rejected)
    assert [(e.field, e.key) for e in by_host["host-2"]] == [("locationId", None)]
    assert [(e.field, e.key) for e in by_host["host-3"]] == [("quantityOnHand", "SKU-3|WH1")]
    assert "must be a number" in by_host["host-3"][0].message
    assert by_host["host-5"][0].field is None
    assert final.unmatched_errors(len(host_rows)) == []
    assert set(sim.records("inventory")) == {
        ("SKU-1", "org_sandbox-WH1"),
        ("SKU-4", "org_sandbox-WH2"),
    }


def test_nested_line_errors_name_the_line(client: ImportJobsClient) -> None:
    """An invalid PO line is reported on its PO row with the path of the line field."""
    rows = [
        po("PO-1", ("SKU-1", 1, 1)).model_dump(mode="json", exclude_none=True),
        {
            "externalPoNumber": "PO-2",
            "supplierId": "SUP-1",
            "destinationLocationId": "WH1",
            "lines": [
                {"skuId": "SKU-1", "quantity": 1, "unitCost": 1},
                {"skuId": "SKU-2", "quantity": 2},
            ],
        },
        {
            "externalPoNumber": "PO-3",
            "supplierId": "SUP-1",
            "destinationLocationId": "WH1",
            "lines": [],
        },
    ]
    final = client.wait_for_job(client.import_purchase_orders(rows).jobId)
    assert final.status == COMPLETED
    assert final.failedCount == 2
    errors = final.errors_by_row()
    assert [(e.key, e.field) for e in errors[1]] == [("PO-2", "lines[1].unitCost")]
    assert [(e.key, e.field) for e in errors[2]] == [("PO-3", "lines")]


def test_local_precheck_flags_the_rows_the_api_rejects(client: ImportJobsClient) -> None:
    """parse_rows refuses exactly the rows the API would reject, so they can go to rejects first."""
    rows: list[Any] = [
        {"skuId": "SKU-1", "locationId": "WH1", "weekStarting": "2025-03-05", "actualDemand": 4},
        {"skuId": "SKU-1", "locationId": "WH1", "weekStarting": "next week"},
        {"skuId": " ", "locationId": "WH1", "weekStarting": "2025-03-05"},
        {"skuId": "SKU-2", "locationId": "WH1", "weekStarting": "2025-03-05", "actualDemand": True},
        {"locationId": "WH1", "weekStarting": "2025-03-05"},
    ]
    good, bad = parse_rows("demand-history", rows)
    assert [i for i, _ in good] == [0]
    assert sorted(bad) == [1, 2, 3, 4]
    assert "weekStarting" in bad[1]
    final = client.wait_for_job(client.import_demand_history(rows).jobId)
    assert sorted(final.errors_by_row()) == sorted(bad)
    assert row_key("demand-history", rows[0]) == "SKU-1|WH1|2025-03-05|ALL"


def test_every_row_rejected_fails_the_job(client: ImportJobsClient, sim: ImportJobsSim) -> None:
    """A job whose every row is invalid is FAILED, stores nothing and accepts nothing."""
    final = client.wait_for_job(
        client.submit("catalog", [{"name": "no id"}, {"externalId": 5}]).jobId
    )
    assert final.status == FAILED
    assert (final.rowCount, final.processedCount, final.failedCount, final.accepted_count) == (
        2,
        2,
        2,
        0,
    )
    assert sorted(final.errors_by_row()) == [0, 1]
    assert sim.records("catalog") == {}


def test_failed_job_reports_a_job_level_error_and_stores_nothing(
    client: ImportJobsClient, sim: ImportJobsSim
) -> None:
    """A job that fails as a whole is FAILED with a row-less error; none of its rows are stored."""
    sim.fail_next_job("Import worker crashed.")
    final = client.wait_for_job(client.import_suppliers([SupplierRow(externalId="S1")]).jobId)
    assert final.status == FAILED
    assert final.accepted_count == 0
    assert [e.message for e in final.job_errors] == ["Import worker crashed."]
    assert final.unmatched_errors(1) == final.job_errors
    assert sim.records("suppliers") == {}
    # the next job is not affected
    assert client.run_import("suppliers", [SupplierRow(externalId="S1")]).status == COMPLETED


# --- idempotency ---------------------------------------------------------------------------


def test_resent_purchase_order_replaces_instead_of_duplicating(
    client: ImportJobsClient, sim: ImportJobsSim
) -> None:
    """A PO re-sent with the same externalPoNumber replaces the stored PO, lines included."""
    first = [po("PO-1", ("SKU-1", 10, 2.5), ("SKU-2", 4, 1)), po("PO-2", ("SKU-3", 1, 9))]
    assert client.wait_for_job(client.import_purchase_orders(first).jobId).status == COMPLETED
    again = [po("PO-1", ("SKU-1", 12, 2.5), supplier="SUP-2")]
    assert client.wait_for_job(client.import_purchase_orders(again).jobId).status == COMPLETED
    stored = sim.records("purchase-orders")
    assert sorted(stored) == [("PO-1",), ("PO-2",)]
    assert stored[("PO-1",)]["supplierId"] == "SUP-2"
    assert stored[("PO-1",)]["lines"] == [{"skuId": "SKU-1", "quantity": 12, "unitCost": 2.5}]
    assert (sim.state.stats["po_created"], sim.state.stats["po_replaced"]) == (2, 1)


def test_post_retried_after_a_lost_answer_duplicates_no_data(
    client: ImportJobsClient, sim: ImportJobsSim
) -> None:
    """A POST whose answer never came is re-sent: two jobs, but still one PO per externalPoNumber."""
    sim.faults.script("POST /api/import/purchase-orders", ["slow"])
    job = client.import_purchase_orders([po("PO-9", ("SKU-1", 1, 1))])
    assert client.wait_for_job(job.jobId).status == COMPLETED
    assert wait_until(lambda: sim.state.stats["jobs_created"] == 2)  # the slow first POST lands
    sim.process_jobs()
    assert sim.state.stats["jobs_created"] == 2
    assert list(sim.records("purchase-orders")) == [("PO-9",)]
    assert sim.state.stats["po_replaced"] == 1


# --- auth and scopes -----------------------------------------------------------------------


def test_unknown_key_is_an_auth_error(sim: ImportJobsSim, sleeper: Sleeper) -> None:
    """A wrong key is a 401 AuthError with code, message and request id, and creates no job."""
    with (
        make_client(sim, sleeper, api_key="wrong-key") as client,
        pytest.raises(AuthError) as caught,
    ):
        client.import_suppliers([SupplierRow(externalId="S1")])
    error = caught.value
    assert (error.status, error.code) == (401, "unauthorized")
    assert error.message == "API key is not valid."
    assert error.request_id == sim.requests[-1].request_id
    assert sim.count() == 1  # an auth failure is not retried
    assert sim.state.stats["jobs_created"] == 0


def test_read_only_key_cannot_import_but_can_poll(
    client: ImportJobsClient, sim: ImportJobsSim, sleeper: Sleeper
) -> None:
    """import:read may read job status but not POST (403 AuthError); import:write may do both."""
    job = client.import_suppliers([SupplierRow(externalId="S1")])
    with make_client(sim, sleeper, api_key=DEFAULT_READ_ONLY_KEY) as reader:
        with pytest.raises(AuthError) as caught:
            reader.import_suppliers([SupplierRow(externalId="S2")])
        assert (caught.value.status, caught.value.code) == (403, "forbidden")
        assert WRITE in caught.value.message
        assert reader.wait_for_job(job.jobId).status == COMPLETED
    sim.add_key("write-only-key", {WRITE})
    sim.add_key("no-scope-key", set())
    with make_client(sim, sleeper, api_key="write-only-key") as writer:
        assert writer.job_status(job.jobId).status == COMPLETED
    with (
        make_client(sim, sleeper, api_key="no-scope-key") as nobody,
        pytest.raises(AuthError) as denied,
    ):
        nobody.job_status(job.jobId)
    assert READ in denied.value.message
    assert sim.state.stats["jobs_created"] == 1


# --- errors and faults ---------------------------------------------------------------------


def test_unknown_job_is_permanent_with_code_and_request_id(
    client: ImportJobsClient, sim: ImportJobsSim
) -> None:
    """Polling an unknown job id is a PermanentError (404) keeping code, message and request id."""
    with pytest.raises(PermanentError) as caught:
        client.wait_for_job("no-such-job")
    error = caught.value
    assert (error.status, error.code) == (404, "not_found")
    assert "no-such-job" in error.message
    assert error.request_id == sim.requests[-1].request_id
    assert sim.count(STATUS) == 1


def test_malformed_request_is_refused_whole(sim: ImportJobsSim) -> None:
    """A body without its array (or not JSON) is a 400 validation_error and creates no job."""
    with httpx.Client(base_url=sim.base_url, headers=sim.auth_headers(), timeout=5) as http:
        missing = http.post("/api/import/orders", json={"records": []})
        wrong = http.post("/api/import/orders", json={"orders": {"externalOrderId": "X"}})
        broken = http.post(
            "/api/import/orders", content=b"{orders", headers={"Content-Type": "application/json"}
        )
    assert [r.status_code for r in (missing, wrong, broken)] == [400, 400, 400]
    assert missing.json() == {"error": "validation_error", "message": "'orders' is required."}
    assert sim.state.stats["jobs_created"] == 0


def test_faults_are_retried_with_retry_after(
    client: ImportJobsClient, sim: ImportJobsSim, sleeper: Sleeper
) -> None:
    """429 (honouring Retry-After), 5xx and malformed answers are retried; one job is made."""
    sim.faults.script("POST /api/import/catalog", ["429", "503", "500"])
    sim.faults.script(STATUS, ["malformed", HTML_502, "drop"])
    job = client.import_catalog([CatalogRow(externalId="SKU-1")])
    assert sleeper.delays[0] == 1.0  # the simulator's Retry-After
    assert client.wait_for_job(job.jobId).status == COMPLETED
    assert sim.state.stats["jobs_created"] == 1
    assert sim.faults.fired == {
        "429": 1,
        "503": 1,
        "500": 1,
        "malformed": 1,
        HTML_502: 1,
        "drop": 1,
    }


def test_malformed_error_bodies_never_crash_the_client(
    client: ImportJobsClient, sim: ImportJobsSim
) -> None:
    """An error body that is cut-off JSON or an HTML page still maps to a classified error."""
    sim.faults.script("POST /api/import/suppliers", [GARBLED_400])
    with pytest.raises(PermanentError) as garbled:
        client.import_suppliers([SupplierRow(externalId="S1")])
    assert garbled.value.status == 400
    assert "validation_error" in garbled.value.message
    assert garbled.value.request_id
    sim.faults.script("POST /api/import/suppliers", [HTML_502] * 4)
    with pytest.raises(RetryableError) as gateway:
        client.import_suppliers([SupplierRow(externalId="S1")])
    assert gateway.value.status == 502
    assert "502 Bad Gateway" in gateway.value.message
    assert sim.state.stats["jobs_created"] == 0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": "forbidden", "message": "No scope."}', ("forbidden", "No scope.")),
        (b'{"error": "Invalid API key"}', (None, "Invalid API key")),
        (
            b'{"error": {"code": "rate_limited", "message": "Slow down"}}',
            ("rate_limited", "Slow down"),
        ),
        (b'{"code": "x", "message": "y"}', ("x", "y")),
        (b'["just", "a", "list"]', (None, "['just', 'a', 'list']")),
        (
            b"<html><body>Bad\n Gateway</body></html>",
            (None, "<html><body>Bad Gateway</body></html>"),
        ),
        (b"", (None, "Bad Request")),
    ],
)
def test_error_parser_reads_every_body_shape(body: bytes, expected: tuple[str | None, str]) -> None:
    """parse_error finds code and message in each error shape and never fails on a broken one."""
    assert parse_error(httpx.Response(400, content=body)) == expected


def test_job_model_tolerates_variants_of_the_envelope() -> None:
    """The job model accepts `id`, a wrapped envelope, unknown fields and bare-string errors."""
    job = ImportJob.model_validate(
        {
            "job": {
                "id": "j1",
                "status": "PROCESSING",
                "rowCount": 2,
                "errors": ["row 1 bad"],
                "eta": 3,
            }
        }
    )
    assert (job.jobId, job.status, job.terminal) == ("j1", "PROCESSING", False)
    assert job.job_errors[0].message == "row 1 bad"
    assert job.model_extra == {"eta": 3}
    error = ImportJob.model_validate(
        {
            "jobId": "j2",
            "status": "COMPLETED",
            "errors": [{"rowIndex": 4, "error": "bad", "key": 7}],
        }
    ).errors[0]
    assert (error.row, error.message, error.key) == (4, "bad", "7")


def test_an_import_that_may_add_rows_is_not_sent_again_after_a_lost_answer(
    client: ImportJobsClient, sim: ImportJobsSim
) -> None:
    """`resend_when_unsure=False`: a POST whose answer was lost raises UnsureSubmitError
    instead of being sent again (the API may have imported it); one refused before it was
    processed (429) is sent again."""
    sim.append = {"orders"}
    sim.faults.script("POST /api/import/orders", ["drop"])
    with pytest.raises(UnsureSubmitError) as lost:
        client.submit("orders", VALID_ROWS["orders"], resend_when_unsure=False)
    assert lost.value.code == "unsure_submit"
    assert sim.state.stats["orders_jobs"] == 1
    sim.process_jobs()
    sim.faults.script("POST /api/import/orders", ["429"])
    job = client.submit("orders", VALID_ROWS["orders"], resend_when_unsure=False)
    assert client.wait_for_job(job.jobId).status == COMPLETED
    assert sim.state.stats["orders_jobs"] == 2
    assert set(sim.records("orders")) == {("SO-1",), ("SO-1", "#2")}  # the API appended


def test_the_simulator_can_answer_in_the_shapes_the_document_leaves_open(
    client: ImportJobsClient, sim: ImportJobsSim
) -> None:
    """Other readings of the job status: errors with 1-based or no row index and no key,
    failedCount counting errors, processedCount counting imported rows only."""
    rows = [{"externalId": "A"}, {"externalId": 5, "name": 7}, {"externalId": "C"}]
    sim.shape = AnswerShape(
        row_index="one", error_key=False, failed_count="errors", processed_count="imported"
    )
    job = client.wait_for_job(client.submit("catalog", rows).jobId)
    assert (job.rowCount, job.processedCount, job.failedCount) == (3, 2, 2)
    assert {e.row for e in job.errors} == {2}
    assert all(e.key is None for e in job.errors)
    sim.shape = AnswerShape(row_index="none")
    assert {e.row for e in client.job_status(job.jobId).errors} == {None}


def test_an_omitted_field_is_reset_or_kept_as_the_simulator_reads_the_document(
    client: ImportJobsClient, sim: ImportJobsSim
) -> None:
    """The text: an omitted reorderPoint defaults to 0 on every import; the other reading
    (`omitted="keep"`): an update keeps the stored value."""
    key = ("SKU-1", "org_sandbox-WH1")
    level = {"skuId": "SKU-1", "locationId": "WH1", "quantityOnHand": 3}
    client.wait_for_job(client.submit("inventory", [{**level, "reorderPoint": 4}]).jobId)
    client.wait_for_job(client.submit("inventory", [level]).jobId)
    assert sim.records("inventory")[key]["minQuantity"] == 0
    sim.omitted = "keep"
    client.wait_for_job(client.submit("inventory", [{**level, "reorderPoint": 4}]).jobId)
    client.wait_for_job(client.submit("inventory", [level]).jobId)
    assert sim.records("inventory")[key]["minQuantity"] == 4


def test_syncd_sandbox_import_jobs_serves_the_other_readings() -> None:
    """`syncd sandbox import-jobs` (a real process) can be switched to the readings syncd does
    not assume, so an operator can try syncd against them: errors with a 1-based row and no
    key, failedCount counting errors; its banner says which readings are in force."""
    command = [
        sys.executable,
        "-m",
        "syncd.cli",
        "sandbox",
        "import-jobs",
        "--port",
        "0",
        "--row-index",
        "one",
        "--no-error-key",
        "--failed-count",
        "errors",
        "--append",
        "demand-history",
        "--append",
        "orders",
        "--omitted",
        "keep",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline() for _ in range(6)]
        base_url = banner[0].split(": ", 1)[1].strip()
        assert "name their row 1-based, without key; failedCount counts errors" in banner[4], banner
        assert "added beside the first in demand-history, orders" in banner[5], banner
        assert "keeps its stored value" in banner[5], banner
        headers = {"x-api-key": DEFAULT_API_KEY}
        rows = [{"externalId": "A"}, {"externalId": 5, "name": 7}, {"externalId": "C"}]
        with httpx.Client(base_url=base_url, headers=headers, timeout=10) as http:
            job_id = http.post("/api/import/catalog", json={"products": rows}).json()["jobId"]
            deadline = time.monotonic() + 15
            job = http.get(f"/api/import/status/{job_id}").json()
            while job["status"] != COMPLETED and time.monotonic() < deadline:
                time.sleep(0.2)
                job = http.get(f"/api/import/status/{job_id}").json()
    finally:
        proc.terminate()
        proc.wait(10)
    assert job["status"] == COMPLETED, job
    assert job["failedCount"] == 2  # two errors in one refused row
    assert {e["row"] for e in job["errors"]} == {2}  # the second row, counted from 1
    assert all("key" not in e for e in job["errors"])


# --- what every client does ----------------------------------------------------------------


class TestImportJobsClientContract(ClientContract):
    """The import-jobs client against `ImportJobsSim` meets the cases every client meets."""

    ROUTE = STATUS

    @pytest.fixture
    def connect(self, sim: ImportJobsSim, sleeper: Sleeper) -> Connect:
        return lambda refused=False: make_client(
            sim, sleeper, api_key="wrong-key" if refused else None
        )

    def call(self, client: ImportJobsClient) -> object:
        job = client.import_suppliers([SupplierRow(externalId="S1")])
        return client.job_status(job.jobId)
