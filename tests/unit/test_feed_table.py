"""FEEDS is the one declaration of host feeds; the options model is built from it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from syncd.config import options_problems
from syncd.host.feeds.merge import FEEDS
from syncd.host.feeds.options import FeedsOptions, HostOptions, feeds_options_model


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


def test_a_feed_gets_its_options_section_from_its_name_alone() -> None:
    """The options model is built from the feed names, not written out a second time: a
    new feed's section is validated like the others, and a misspelt one is refused."""
    model = feeds_options_model([*FEEDS, "widgets"])
    options = model.model_validate({"widgets": {"mode": "snapshot"}})
    assert options.widgets.mode == "snapshot"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError) as caught:
        model.model_validate({"widget": {}, "widgets": {"mode": "full"}})
    assert sorted(".".join(map(str, e["loc"])) for e in caught.value.errors()) == [
        "widget",
        "widgets.mode",
    ]


def test_host_options_refuse_an_unknown_feed_by_key() -> None:
    """`host.options.feeds.<name>` of a feed that does not exist is named by check-config."""
    problems = options_problems("host", {"feeds": {"artcles": {}}}, HostOptions)
    assert problems == [
        "host.options.feeds.artcles: unknown key (check the spelling against syncd.example.toml)"
    ]
