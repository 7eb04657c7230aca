"""sd_notify in a few dependency-free lines; a no-op when NOTIFY_SOCKET is unset."""

from __future__ import annotations

import os
import socket


def enabled() -> bool:
    """Whether notify() reaches anyone: a STATUS= line not built is a state DB read saved."""
    return bool(os.environ.get("NOTIFY_SOCKET"))


def notify(*states: str) -> bool:
    """Send `READY=1`, `STATUS=...` etc. to systemd; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings: half of WATCHDOG_USEC, when it is meant for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000 / 2
    except ValueError:
        return None
