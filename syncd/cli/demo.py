"""`syncd demo`: the daemon against local simulators."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.option("--duration", default=45.0, show_default=True, help="Seconds to run the daemon.")
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Working directory to keep [default: a new temporary directory].",
)
@click.option("--seed", default=7, show_default=True, help="Seed of the simulated data.")
def demo(duration: float, workdir: Path | None, seed: int) -> None:
    """Run syncd against local simulators and show what it did."""
    from syncd.demo import run_demo

    sys.exit(run_demo(duration, workdir, seed))
