"""The outbox destinations are declared in one table, not filled in by imports elsewhere."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import syncd.send
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


def test_every_destination_lives_in_the_send_package() -> None:
    """Sending has one home: each destination is defined in `syncd.send`, and nothing
    there imports a job (jobs use the send package, not the other way round)."""
    for name, factory in DESTINATIONS.items():
        assert factory.__module__ == f"syncd.send.{name}", name
    package = Path(syncd.send.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for module in names:
                assert not module.startswith("syncd.jobs"), f"{path.name} imports {module}"
