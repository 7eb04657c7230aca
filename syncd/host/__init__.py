"""The host (WMS/ERP) file interface.

`inbox/`: the host drops feed files (articles, stock, orders, and for planning
locations, suppliers, sales, purchase_orders, po_history; CSV or JSON Lines),
which `load_inbox` validates row by row into the `host_*` tables, then moves to
`archive/` (or, refused whole, to `rejects/` with an errors file). `outbox/`:
syncd writes files for the host through the outbox sender (destination "host",
`syncd.send.host`). See `feeds` for the file shapes, `inbox` for the loading
rules (with `reading`, a file's rows or its refusal, and `files`, finding, checking
and moving files), `outbox` for how the files are written.
"""

from syncd.host.dirs import HostDirs
from syncd.host.feeds.merge import FEEDS
from syncd.host.feeds.options import FeedOptions, HostOptions, host_options
from syncd.host.files import InboxFile, scan_inbox
from syncd.host.inbox import LoadResult, load_file, load_inbox
from syncd.host.outbox import write_atomic

__all__ = [
    "FEEDS",
    "FeedOptions",
    "HostDirs",
    "HostOptions",
    "InboxFile",
    "LoadResult",
    "host_options",
    "load_file",
    "load_inbox",
    "scan_inbox",
    "write_atomic",
]
