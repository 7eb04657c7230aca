"""Pieces of netstock.export (not a job): `snapshot` renders and freezes what is sent,
`export_plan` holds its pure decisions; the job module drives the exchange."""
