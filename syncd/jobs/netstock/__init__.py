"""Pieces of the Netstock jobs (not a job): `export_plan`, netstock.export's pure decisions."""
