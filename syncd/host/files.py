"""Host files on disk: finding the settled feed files (and the strays) in `inbox/`,
telling whether a file changed (`identity`), its digest, and moving it under a free name.

Nothing here reads rows or decides a file's fate: `syncd.host.inbox` does, and calls
these to find, check and move files.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from syncd.host.dirs import HostDirs
from syncd.host.feeds.fields import Format
from syncd.host.feeds.merge import FEEDS
from syncd.lifecycle import follow_umask

EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
IGNORED_SUFFIXES = (".tmp", ".part", ".errors.json")


@dataclass(frozen=True)
class InboxFile:
    feed: str
    path: Path
    format: Format
    size: int
    mtime: float


def classify(name: str) -> tuple[str, Format] | None:
    """(feed, format) of an inbox file name, or None when it is not a feed file."""
    if name.startswith(".") or name.endswith(IGNORED_SUFFIXES):
        return None
    stem, ext = os.path.splitext(name)
    fmt = EXTENSIONS.get(ext.lower())
    if fmt is None:
        return None
    for feed in FEEDS:
        rest = stem[len(feed) :]
        if stem.lower().startswith(feed) and (not rest or rest[0] in "-_."):
            return feed, fmt
    return None


def scan_inbox(host_dir: Path, settle_time: float, *, now: float | None = None) -> list[InboxFile]:
    """Settled feed files in `inbox/`, oldest first (by mtime, then name).

    Ignored: dot files, `*.tmp`/`*.part`, names that match no feed, and files
    modified less than `settle_time` seconds ago (the host may still be writing).
    """
    found = [
        InboxFile(kind[0], Path(entry.path), kind[1], info.st_size, info.st_mtime)
        for entry, kind, info in _settled_feed_entries(host_dir, settle_time, now)
        if stat.S_ISREG(info.st_mode)
    ]
    return sorted(found, key=lambda f: (f.mtime, f.path.name))


def _settled_feed_entries(
    host_dir: Path, settle_time: float, now: float | None
) -> Iterator[tuple[os.DirEntry[str], tuple[str, Format], os.stat_result]]:
    """Each `inbox/` entry named like a feed file, with its lstat, once settled (its
    mtime at least `settle_time` seconds old). Links are never followed."""
    inbox = HostDirs(host_dir).inbox
    if not inbox.is_dir():
        return
    now = time.time() if now is None else now
    with os.scandir(inbox) as entries:
        for entry in entries:
            kind = classify(entry.name)
            if kind is None:
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed by the host since the listing: nothing to load
            if now - info.st_mtime >= settle_time:
                yield entry, kind, info


@dataclass(frozen=True)
class StrayEntry:
    """An inbox entry with a feed file's name that is not a regular file."""

    feed: str
    path: Path
    kind: str  # "symlink", "FIFO", "directory", "socket", "device"
    target: str | None = None  # a symlink's target, as text (never followed)


def _entry_kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


def scan_strays(
    host_dir: Path, settle_time: float, *, now: float | None = None
) -> list[StrayEntry]:
    """Entries in `inbox/` named like a feed file that are not regular files
    (settled like files are). They are never opened or followed."""
    found = []
    for entry, kind, info in _settled_feed_entries(host_dir, settle_time, now):
        if stat.S_ISREG(info.st_mode):
            continue
        what = _entry_kind(info.st_mode)
        target = None
        if what == "symlink":
            try:
                target = os.readlink(entry.path)
            except OSError:
                target = None
        found.append(StrayEntry(kind[0], Path(entry.path), what, target))
    return sorted(found, key=lambda e: e.path.name)


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256 hex, size in bytes), streamed."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def free_name(directory: Path, name: str) -> Path:
    """`name` in `directory`; when taken (hosts reuse names), `stem.<UTC time>[-n].ext`."""
    target = directory / name
    if not target.exists():
        return target
    stem, ext = os.path.splitext(name)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = directory / f"{stem}.{stamp}{ext}"
    n = 1
    while target.exists():
        n += 1
        target = directory / f"{stem}.{stamp}-{n}{ext}"
    return target


Identity = tuple[int, int, int, int]


def identity(path: Path) -> Identity:
    """(size, mtime, inode, device): a file that changed or was replaced differs."""
    info = path.stat(follow_symlinks=False)
    return info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev


def identity_now(path: Path) -> Identity | None:
    try:
        return identity(path)
    except FileNotFoundError:
        return None


def move_file(path: Path, directory: Path) -> Path:
    """Move `path` into `directory` under a name not yet taken there; returns the new path."""
    target = free_name(directory, path.name)
    os.replace(path, target)
    follow_umask(target)
    return target
