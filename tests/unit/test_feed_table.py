"""FEEDS is the one declaration of host feeds; the options model follows it."""

from __future__ import annotations

from syncd.host.feeds.merge import FEEDS
from syncd.host.feeds.options import FeedsOptions, HostOptions


def test_each_feed_is_keyed_by_its_own_name() -> None:
    """The table's key is the name the feed stages, merges and rejects under."""
    assert [feed.name for feed in FEEDS.values()] == list(FEEDS)


def test_options_have_one_section_per_feed() -> None:
    """A feed added to FEEDS gets its `host.options.feeds.<name>` section, and no section
    names a feed that does not exist."""
    assert list(FeedsOptions.model_fields) == list(FEEDS)
    options = HostOptions()
    for name, feed in FEEDS.items():
        assert options.feed(name).mode == feed.default_mode
