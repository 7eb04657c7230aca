"""Every outbox destination, declared once: intents name one of these keys.

A destination missing here is not silently dropped: its intents wait and an
`outbox_destination` alert names it. Add a destination by adding its module to
`syncd/send/` and its factory to this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from syncd.send import dsorder, host, instock
from syncd.send.base import DestinationFactory

DESTINATIONS: Mapping[str, DestinationFactory] = MappingProxyType(
    {
        instock.DESTINATION: instock.InstockDestination,
        dsorder.DESTINATION: dsorder.DSOrderDestination,
        host.DESTINATION: host.host_destination,
    }
)
