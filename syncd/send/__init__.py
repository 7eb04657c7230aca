"""Sending data out: the outbox sender and its destinations."""
