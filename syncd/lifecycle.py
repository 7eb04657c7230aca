"""Process-wide shutdown flag, so waits deep inside a job (retry backoff) end promptly.

The daemon sets it on SIGTERM/SIGINT; a backoff sleep wakes at once and raises
ShutdownRequested, which the runner records as an interrupted run. Nothing that
is durable is lost: the job stops where it would have retried.
"""

from __future__ import annotations

import threading

from syncd.errors import ShutdownRequested

STOPPING = threading.Event()


def interruptible_sleep(seconds: float) -> None:
    """time.sleep that ends early, with ShutdownRequested, when the process is stopping."""
    if STOPPING.wait(seconds):
        raise ShutdownRequested("stopping during a retry wait")
