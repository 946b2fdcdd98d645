"""Embedded mode's delivery: the in-process event bus, the SQL outbox relay and the SQL-persisted job loop,
with the guarantees handlers are written for in Dapr mode."""
