"""Pieces of the DSOrder jobs (not a job; the jobs are dsorder_pull.py and
dsorder_progress.py): their decisions as `Plan` values."""
