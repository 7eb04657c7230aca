"""`host.options`: per-feed mode (snapshot or delta) and the host-wide switches, validated
against the feeds there are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from syncd.config import HostConfig, format_validation_errors
from syncd.errors import ConfigError
from syncd.host.feeds.fields import Format, Mode
from syncd.host.feeds.merge import FEEDS


class FeedOptions(BaseModel):
    """`host.options.feeds.<feed>`: how one feed's files are read and applied."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    mode: Mode | None = None  # None: the feed's default (see FEEDS: snapshot or delta)
    format: Literal["auto", "csv", "jsonl"] = "auto"  # auto: by file extension
    max_delete_fraction: float = Field(0.5, ge=0.0, le=1.0)
    allow_mass_delete: bool = False


class _FeedSections(BaseModel):
    """`host.options.feeds`: one section per feed in FEEDS (an unknown feed name is an error)."""

    model_config = ConfigDict(extra="forbid")


def feeds_options_model(feeds: Iterable[str]) -> type[_FeedSections]:
    """The model of `host.options.feeds`, a `FeedOptions` field per feed name: a feed is
    declared once, in FEEDS, and gets its options section from there."""
    fields: dict[str, Any] = {name: (FeedOptions, FeedOptions()) for name in feeds}
    return create_model("FeedsOptions", __base__=_FeedSections, __module__=__name__, **fields)


if TYPE_CHECKING:  # its fields are read by feed name (`HostOptions.feed`), never as attributes
    FeedsOptions = _FeedSections
else:
    FeedsOptions = feeds_options_model(FEEDS)


class HostOptions(BaseModel):
    """`host.options`: the host file interface's own settings."""

    model_config = ConfigDict(extra="forbid")

    feeds: FeedsOptions = FeedsOptions()
    batch_size: int = Field(5000, ge=1, le=100_000)
    outbox_format: Format = "jsonl"
    outbox_formats: dict[str, Format] = Field(default_factory=dict)  # per stream

    def feed(self, name: str) -> FeedOptions:
        """The feed's options with its default mode filled in."""
        options: FeedOptions = getattr(self.feeds, name)
        if options.mode is None:
            options = options.model_copy(update={"mode": FEEDS[name].default_mode})
        return options

    def outbox_format_for(self, stream: str) -> Format:
        return self.outbox_formats.get(stream, self.outbox_format)


def host_options(host: HostConfig) -> HostOptions:
    """Read `host.options`, or raise ConfigError naming each bad key."""
    try:
        return HostOptions.model_validate(host.options)
    except ValidationError as exc:
        problems = [f"host.options.{p}" for p in format_validation_errors(exc)]
        raise ConfigError("invalid host options:\n  " + "\n  ".join(problems), problems) from None
