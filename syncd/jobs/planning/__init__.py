"""The pieces of the `planning.import` job (`syncd/jobs/planning_import.py`), by concern.

`options` (its options), `rows` (host rows -> import rows, pure), `hostrows` (the host
tables read in chunks), `plan` (its decisions, pure: plain data in, a `Plan` or a small
decision out), `record` (apply a decision, count, warn), `flights` (submit, record and poll
the import jobs). Not a job: no `SPEC` here.
"""
