"""Contract of the DSOrder CLIENT against the running simulator over loopback HTTP (no mocks).

The cases every client meets (`ClientContract`) run on a real `DSOrderClient` built from a
`ConnectorConfig` pointing at a `DSOrderSim`; what only DSOrder does is exercised through the
jobs in tests/integration/test_dsorder_loop.py and against the simulator in test_dsorder_sim.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from syncd.config import ConnectorConfig
from syncd.connectors.dsorder import DSOrderClient
from syncd.sandbox.base import ManualClock
from syncd.sandbox.dsorder import DSOrderSim
from tests.contract.clientkit import ATTEMPTS, ClientContract, Connect

START = datetime(2025, 3, 10, 9, 0, tzinfo=UTC).timestamp()


def make_client(sim: DSOrderSim, *, token: str | None = None) -> DSOrderClient:
    """A client configured the way the daemon configures it, pointed at `sim`."""
    config = ConnectorConfig.model_validate(
        {
            "enabled": True,
            "base_url": sim.base_url,
            "token": sim.token if token is None else token,
            "retry": {"max_attempts": ATTEMPTS, "initial_backoff": 0.01, "max_backoff": 0.05},
            "timeouts": {"read": 2.0},
        }
    )
    return DSOrderClient(config)


@pytest.fixture
def sim() -> Iterator[DSOrderSim]:
    # retry_after=0: a 429 asks for no wait, so the client may retry it inside its backoff cap.
    with DSOrderSim(seed=3, clock=ManualClock(START), retry_after=0) as running:
        yield running


class TestDSOrderClientContract(ClientContract):
    """The DSOrder client against `DSOrderSim` meets the cases every client meets."""

    ROUTE = "GET /orders/submitted"

    @pytest.fixture
    def connect(self, sim: DSOrderSim) -> Connect:
        return lambda refused=False: make_client(sim, token="not-the-token" if refused else None)

    def call(self, client: DSOrderClient) -> object:
        return client.submitted_orders()
