"""The outbox destinations are declared in one table, not filled in by imports elsewhere."""

from __future__ import annotations

import subprocess
import sys

import pytest

from syncd.send.destinations import DESTINATIONS


def test_the_sender_alone_knows_every_destination() -> None:
    """A fresh interpreter that imports only the sender delivers to instock, dsorder and
    host: no other module has to be imported first for a destination to exist."""
    code = (
        "import sys\n"
        "from syncd.send.sender import Sender\n"
        "from syncd.config import Settings\n"
        "sender = Sender(None, Settings())\n"
        "print(sorted(sender.destinations))\n"
        "print('syncd.jobs' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split("\n")
    assert out[0] == "['dsorder', 'host', 'instock']"
    assert out[1] == "False"  # the jobs package played no part in it


def test_the_table_cannot_be_changed_at_run_time() -> None:
    """Registration is the table itself: nothing adds or replaces a destination later."""
    with pytest.raises(TypeError):
        DESTINATIONS["extra"] = DESTINATIONS["host"]  # type: ignore[index]
