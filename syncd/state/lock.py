"""Single-instance lock on the state directory.

An advisory `flock` is released by the kernel when the process dies, even by
kill -9, so a stale lock file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from syncd.errors import AlreadyRunningError

PROC_LOCKS = Path("/proc/locks")


class StateLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "syncd.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(fd).st_mode & 0o077:  # left by an older syncd
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunningError(
                f"another syncd (pid {holder}) is already running on state directory "
                f"{self.path.parent}; stop it first or use another daemon.state_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_holder(state_dir: Path, proc_locks: Path = PROC_LOCKS) -> int | None:
    """The pid of the process holding the state directory's lock, or None: read, never
    taken, so a check cannot make a starting daemon fail on a lock held for a moment.

    Linux lists every flock in /proc/locks (`1: FLOCK ADVISORY WRITE <pid>
    <major>:<minor>:<inode> 0 EOF`, major and minor in hex); where it cannot be read, the pid
    the holder wrote into the lock file, if that process exists.
    """
    path = state_dir / "syncd.lock"
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    try:
        lines = proc_locks.read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return _pid_in_file(path)
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or "->" in fields:
            continue
        try:
            major, minor, inode = fields[5].split(":")
            found = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        if found == wanted:
            return int(fields[4])
    return None


def _pid_in_file(path: Path) -> int | None:
    try:
        pid = int(path.read_text(encoding="ascii").strip() or 0)
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # it exists, as another user
    return pid
