"""One way for tests to build Settings: connectors pointing at simulators on loopback, a host
directory, and a state DB migrated once (jobs open it with migrate=False)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syncd.config import Settings
from syncd.sandbox.base import Simulator
from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.import_jobs import ImportJobsSim
from syncd.sandbox.instock import InstockSim
from syncd.sandbox.netstock import (
    DEFAULT_CLIENT_ID,
    DEFAULT_PASSWORD,
    DEFAULT_SCOPE,
    DEFAULT_USERNAME,
    NetstockSim,
)
from syncd.sandbox.oregon_siop import OregonSiopSim
from syncd.state import Store

FAST_BACKOFF = {"initial_backoff": 0.01, "max_backoff": 0.05}


def fast_retry(max_attempts: int) -> dict[str, Any]:
    """A retry section whose backoff costs a test hundredths of a second, not seconds."""
    return {"max_attempts": max_attempts, **FAST_BACKOFF}


def connector_for(sim: Simulator, **extra: Any) -> dict[str, dict[str, Any]]:
    """`{name: section}` for the connector of `sim`'s system, with the simulator's seeded
    credentials; `extra` keys are added to the section (`options` are merged)."""
    options: dict[str, Any] = {}
    auth: dict[str, Any]
    if isinstance(sim, InstockSim):
        name = "instock"
        auth = {"token": sim.token, "site_id": sim.site_id, "environment": "sandbox"}
    elif isinstance(sim, DSOrderSim):
        name, auth = "dsorder", {"token": sim.token}
    elif isinstance(sim, ImportJobsSim):
        name, auth = "import_jobs", {"api_key": sim.api_key}
    elif isinstance(sim, OregonSiopSim):
        name, auth = "oregon_siop", {"api_key": sim.api_key}
    elif isinstance(sim, NetstockSim):
        name = "netstock"
        auth = {
            "username": DEFAULT_USERNAME,
            "password": DEFAULT_PASSWORD,
            "client_id": DEFAULT_CLIENT_ID,
        }
        options = {"scope": DEFAULT_SCOPE}
    else:
        raise TypeError(f"no connector for simulator {type(sim).__name__}")
    # Unthrottled unless a test sets `rate_limit`: the connectors' default budgets would
    # only slow tests that are about something else (tests/integration/test_rate_budget.py).
    section: dict[str, Any] = {
        "enabled": True,
        "base_url": sim.base_url,
        "rate_limit": {"per_second": 0},
        **auth,
        **extra,
    }
    if options or "options" in extra:
        section["options"] = {**options, **extra.get("options", {})}
    return {name: section}


def sim_settings(
    root: Path,
    connectors: dict[str, dict[str, Any]],
    *,
    daemon: dict[str, Any] | None = None,
    host: dict[str, Any] | None = None,
    **sections: Any,
) -> Settings:
    """Settings with the state DB under `root/state` (migrated) and the host directory under
    `root/host` (settle_time 0, inbox created); `sections` (outbox, jobs, ...) pass through."""
    settings = Settings(
        daemon={"state_dir": str(root / "state"), **(daemon or {})},
        connectors=connectors,
        host={"dir": str(root / "host"), "settle_time": 0, **(host or {})},
        **sections,
    )
    Store.open(settings.db_path).close()
    (settings.host_dir / "inbox").mkdir(parents=True, exist_ok=True)
    return settings
