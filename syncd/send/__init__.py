"""Sending data out of syncd: two patterns, and when to use which.

**1. Outbox send** (this package). A job plans what changed and records one
*intent* per call in the `outbox` table, in the transaction of the diff that
caused it (`Store.add_intents`); it never calls the remote itself. The sender
(`sender.Sender`, run by the `outbox.send` job) delivers each destination's
intents in id order per `order_key`, and decides each outcome in one place:
sent or "already done", refused into `rejects`, retried with bounded backoff,
an auth failure or an outage that stops the destination (see `sender`).
Destinations: `instock` (articles and orders), `dsorder` (fulfilment totals,
closes), `host` (files in the host's `outbox/` directory), declared once in
`destinations.DESTINATIONS`. Used by instock.articles, instock.orders,
instock.inventory, instock.moves, dsorder.pull, dsorder.progress, and by
netstock.pop for its files.

Use it when each change is one call the remote answers at once, that can be
replayed after a crash with the same result (natural keys, totals rather than
increments, "already exists / already done" answers recognised), and whose
outcome concerns that one intent. To add a destination: a module here with a
class that has `send(intent)` and `close()` (`base.Destination`; optionally
`defer`, `on_outcome`, `stop_key_on_reject`), and its factory in
`destinations.DESTINATIONS`.

**2. Driven exchange** (in the job itself). The job steps the remote through
a state machine of its own, persisting every step in its own tables in the
transaction that records the answer, and resumes from there after a crash or
a stop (`ctx.check_stop()` between steps, every poll bounded):

- planning.import: submit a batch, record the remote job id, poll it to
  COMPLETED/FAILED, then record each row accepted or rejected
  (`planning_import_jobs`, `planning_import_accepted` / `_failed`);
- netstock.export: dataset start, per model start / chunks / end with the line
  count, processing, status polled to Complete (`netstock_exports`,
  `netstock_export_chunks`);
- oregon.siop: batches whose 400 names bad items inside the batch; the rest is
  re-sent at once and each item recorded accepted or failed
  (`oregon_siop_accepted` / `_failed`);
- netstock.pop: a pop removes what it returns, so each answer is journaled
  (`netstock_pops`) before anything else; its files then go out by pattern 1.

Use it when one logical send is several dependent calls (open, send parts,
close), when the remote answers later (a job or dataset id to poll), when an
answer must be matched back row by row against what a batch carried, or when
a call consumes data on the remote: the outcome is then not one intent's, and
retrying a single call blindly could duplicate or lose data. Such a job still
puts every refused row in `rejects` with its reason and opens alerts through
the store, as the sender does.
"""
