"""`syncd sandbox <system>` (real processes) offers every switch of its simulator: auth, the
seeded data and the other readings of the documents."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from syncd.sandbox import import_jobs, instock


@contextmanager
def sandbox(*args: str) -> Iterator[tuple[str, list[str]]]:
    """Start `syncd sandbox ARGS --port 0`; yield its base URL and its first banner lines."""
    command = [sys.executable, "-m", "syncd.cli", "sandbox", *args, "--port", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline() for _ in range(2)]
        assert banner[0].strip(), f"no banner from {command}"
        yield banner[0].split()[-1], banner
    finally:
        proc.terminate()
        proc.wait(10)


def test_dsorder_takes_auth_articles_and_initial_orders() -> None:
    """--no-auth, --articles and --initial-orders reach the DSOrder simulator."""
    args = ["dsorder", "--no-auth", "--articles", "A1,A2", "--initial-orders", "3"]
    with sandbox(*args, "--orders-per-minute", "0") as (url, banner):
        assert "auth: none" in banner[1], banner
        answer = httpx.get(f"{url}/orders/submitted", timeout=10)
    assert answer.status_code == 200, answer.text
    orders = answer.json()["data"]
    assert len(orders) == 3
    articles = {line["article_id"] for order in orders for line in order["details"]}
    assert articles <= {"A1", "A2"}, articles


def test_dsorder_takes_the_auth_header_and_scheme() -> None:
    """--auth-header/--auth-scheme/--token set what the DSOrder simulator accepts."""
    args = ["dsorder", "--auth-header", "X-Key", "--auth-scheme", "", "--token", "k1"]
    with sandbox(*args, "--orders-per-minute", "0") as (url, _):
        refused = httpx.get(f"{url}/orders/submitted", headers={"Authorization": "Bearer k1"})
        taken = httpx.get(f"{url}/orders/submitted", headers={"X-Key": "k1"}, timeout=10)
    assert refused.status_code == 401
    assert taken.status_code == 200, taken.text


def test_oregon_siop_takes_no_auth_and_the_document_error_style() -> None:
    """--no-auth and --error-style document: a keyless bad post gets the document's non-JSON
    400."""
    with sandbox("oregon-siop", "--no-auth", "--error-style", "document") as (url, _):
        answer = httpx.post(url, json={"dataItems": [{"units_sold": "x"}]}, timeout=10)
    assert answer.status_code == 400
    try:
        json.loads(answer.text)
    except ValueError:
        pass
    else:
        raise AssertionError(f"expected the document's broken layout, got JSON: {answer.text}")


def test_netstock_takes_its_credentials() -> None:
    """--username/--password/--client-id/--scope set the login the Netstock simulator accepts."""
    args = ["netstock", "--username", "U1", "--password", "p1", "--client-id", "c1"]
    with sandbox(*args, "--scope", "", "--phases", "1,1,1,1") as (url, _):
        form = {"grant_type": "client_credentials", "client_id": "c1"}
        taken = httpx.post(
            f"{url}/application/o/token/", data={**form, "username": "U1", "password": "p1"}
        )
        refused = httpx.post(
            f"{url}/application/o/token/",
            data={**form, "username": "U1", "password": "wrong"},
            timeout=10,
        )
    assert taken.status_code == 200, taken.text
    assert refused.status_code == 400


def test_import_jobs_takes_its_keys() -> None:
    """--api-key sets the key the import-jobs simulator accepts; the default key is refused."""
    with sandbox("import-jobs", "--api-key", "K1", "--read-only-key", "") as (url, _):
        taken = httpx.get(f"{url}/api/import/status/none", headers={"x-api-key": "K1"})
        refused = httpx.get(
            f"{url}/api/import/status/none",
            headers={"x-api-key": import_jobs.DEFAULT_API_KEY},
            timeout=10,
        )
    assert taken.status_code == 404, taken.text
    assert refused.status_code == 401


def test_instock_takes_the_other_readings() -> None:
    """--placed-at-text, --pick-moves and --duplicate-order-ids reach the Instock simulator:
    a placed_at sent with an offset reads back as whole seconds UTC with a Z."""
    args = ["instock", "--articles", "20", "--placed-at-text", "normalized"]
    args += ["--pick-moves", "before_done", "--duplicate-order-ids", "accept"]
    with sandbox(*args) as (url, banner):
        headers = {"Authorization": f"Bearer {instock.DEFAULT_TOKEN}"}
        site = banner[1].split("sites: ")[1].split(",")[0].strip()
        articles = httpx.get(f"{url}/articles", headers=headers, timeout=10).json()["articles"]
        body = {
            "order_id": "SB-1",
            "placed_at": "2026-12-04T08:38:39.250+01:00",
            "lines": [{"line_id": "SB-1-1", "article_id": articles[0]["article_id"], "qty": 1}],
        }
        created = httpx.post(f"{url}/{site}/orders", json=body, headers=headers, timeout=10)
        assert created.status_code < 300, created.text
        again = httpx.post(f"{url}/{site}/orders", json=body, headers=headers, timeout=10)
        assert again.status_code < 300, again.text  # duplicate ids accepted
        order = httpx.get(f"{url}/{site}/orders/SB-1", headers=headers, timeout=10).json()
    assert order["placed_at"] == "2026-12-04T07:38:39Z"
