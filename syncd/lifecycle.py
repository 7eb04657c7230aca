"""Process-wide state: the shutdown flag, and the umask every entry point sets.

The shutdown flag lets waits deep inside a job (retry backoff) end promptly.

The daemon sets it on SIGTERM/SIGINT; a backoff sleep wakes at once and raises
ShutdownRequested, which the runner records as an interrupted run. Nothing that
is durable is lost: the job stops where it would have retried.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from pathlib import Path

from syncd.errors import ShutdownRequested

STOPPING = threading.Event()


def interruptible_sleep(seconds: float) -> None:
    """time.sleep that ends early, with ShutdownRequested, when the process is stopping."""
    if STOPPING.wait(seconds):
        raise ShutdownRequested("stopping during a retry wait")


# -- file modes -------------------------------------------------------------------------

PROCESS_UMASK = 0o027  # files 0640, directories 0750: the host's group may read, no one else
_SET: dict[str, int] = {}  # "umask": what restrict_umask set


def restrict_umask() -> int:
    """Make the process umask at least PROCESS_UMASK (a stricter one is kept); returns it.

    Called first thing by every entry point (the CLI, `run_daemon`, `run_demo`), so the
    state DB, its WAL and SHM, the lock, and every host file syncd writes are never
    world-readable, with or without systemd's `UMask=`.
    """
    old = os.umask(0o077)  # os.umask only sets: keep a strict value while reading it
    _SET["umask"] = old | PROCESS_UMASK
    os.umask(_SET["umask"])
    return _SET["umask"]


def current_umask() -> int:
    """The process umask, without the set-and-restore race of `os.umask` in threads."""
    if "umask" in _SET:
        return _SET["umask"]
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return PROCESS_UMASK


def follow_umask(path: Path) -> None:
    """Take away the bits the umask denies from a file syncd adopted (e.g. a host file
    moved to `archive/` or `rejects/` keeps the host's mode otherwise); never adds any."""
    with contextlib.suppress(OSError):
        info = path.lstat()
        mode, denied = stat.S_IMODE(info.st_mode), current_umask()
        if stat.S_ISREG(info.st_mode) and mode & denied:  # a symlink is never followed
            os.chmod(path, mode & ~denied)
