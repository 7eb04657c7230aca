"""Host inbox feeds: row models, file shapes, and how each feed lands in its table.

- `fields`: the value grammar (ids, whole numbers, exact decimals, flags, dates).
- `rows`: one row model per feed.
- `options`: `host.options`, validated against the feeds there are.
- `merge`: staging and merging each feed into its table; `FEEDS`, the table of feeds.

The file formats (feed names, columns, JSON shapes, the grammar of each value, the table
each feed lands in) are documented in docs/host-files.md; keep the two in step.
"""
