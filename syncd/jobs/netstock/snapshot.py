"""netstock.export's snapshot: every model rendered once, hashed, and frozen when it changed.

The lines are rendered (`syncd.jobs.netstock_dataset`) into the frozen snapshot's temp
table in one read transaction, hashing the same text; rows that cannot be sent become
rejects, each once. Only a snapshot that differs from the last one that completed becomes
an export (`export_plan.snapshot_decision`): its rows copied into netstock_export_rows with
its `netstock_exports` row, in one short transaction.
"""

from __future__ import annotations

import hashlib
import itertools

from syncd.clock import iso
from syncd.connectors.netstock.settings import configured_chunk_size
from syncd.jobs.base import JobContext
from syncd.jobs.netstock import export_plan as plan
from syncd.jobs.netstock_dataset import (
    REJECT_SOURCE,
    Options,
    Rejected,
    Whole,
    ascii_escaped,
    rendered_lines,
)
from syncd.state import Store
from syncd.state.mirror import netstock_export as journal
from syncd.state.mirror.netstock_export import Export, FrozenWriter
from syncd.state.plan import Plan, apply_plan


def group_size(ctx: JobContext, options: Options) -> int:
    """Lines per frozen row: the chunk size, so that a chunk is one stored text."""
    return options.chunk_size or configured_chunk_size(ctx.settings.connectors.netstock)


def freeze(
    frozen: FrozenWriter,
    store: Store,
    options: Options,
    group: int,
    whole: Whole,
    rejects: list[Rejected],
) -> tuple[str, list[tuple[str, int]]]:
    """Render every model once into the frozen snapshot, `group` lines per row (joined with
    newlines: a rendered line never holds one), hashing the same text; returns the hash and
    each model's line count. Rows that cannot be sent go to `rejects` (not hashed: what is
    hashed is what is sent)."""
    digest = hashlib.sha256()
    counts: list[tuple[str, int]] = []
    for model in options.models:
        digest.update(f"\x1e{model}\x1f".encode())
        lines = rendered_lines(store, model, options, whole, rejects)
        seq = 0
        while batch := list(itertools.islice(lines, group)):
            text = ascii_escaped("\n".join(batch))
            digest.update(text.encode())
            digest.update(b"\n")
            frozen.add(model, seq, text)
            seq += len(batch)
        counts.append((model, seq))
    return digest.hexdigest(), counts


def record_rejects(store: Store, rejects: list[Rejected], run_id: str | None) -> int:
    """Record the rows left out, each once: one already open (the same row, field and
    reason, from an earlier export of the same data) is not added again."""
    known = store.list_rejects("open", REJECT_SOURCE, limit=len(rejects) + 1_000_000)
    new = plan.new_rejects(map(Rejected.as_reject, rejects), known)
    return apply_plan(store, Plan(rejects=new), run_id=run_id).rejects


def prepare(ctx: JobContext, options: Options) -> Export | None:
    """Render the snapshot once: its hash decides, its text is what will be sent.

    The lines go to a temp table in one read transaction (one consistent view of the host
    tables, no write lock on the state DB while rendering); only a snapshot that differs
    from the last successful one is copied (SQL) into netstock_export_rows, with its
    export row, in one short transaction.
    """
    store = ctx.store
    whole, rejects = Whole(options.integer_fractions), list[Rejected]()
    with journal.frozen_snapshot(store) as frozen:
        wanted, counts = freeze(frozen, store, options, group_size(ctx, options), whole, rejects)
    if whole.converted:
        ctx.counts["fractions_converted"] += whole.converted
    if rejects:
        ctx.counts["rejected"] += len(rejects)
        if not ctx.dry_run:
            record_rejects(store, rejects, ctx.run_id)
    lines = sum(count for _model, count in counts)
    decision = plan.snapshot_decision(
        lines, wanted, journal.last_success_hash(store) if lines else None
    )
    if decision != "prepare":
        ctx.counts[decision] += 1
        return None
    apply_plan(store, plan.prepared(wanted, counts, ctx.run_id, iso()), run_id=ctx.run_id)
    ctx.counts["prepared"] += 1
    return journal.current_export(store)
