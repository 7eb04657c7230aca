"""The backfill job's pieces (not a job; the job is syncd/jobs/backfill_requests.py): its
pure decisions in plan.py."""
