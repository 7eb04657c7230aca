"""The host directory's layout, shared by the inbox loader and the outbox writer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HostDirs:
    """`inbox/` (host -> syncd), `archive/`, `rejects/`, `outbox/` (syncd -> host)."""

    root: Path

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def rejects(self) -> Path:
        return self.root / "rejects"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    def ensure(self) -> HostDirs:
        for path in (self.inbox, self.archive, self.rejects, self.outbox):
            path.mkdir(parents=True, exist_ok=True)
        return self
