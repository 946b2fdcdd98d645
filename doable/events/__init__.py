"""Event delivery adapters: the in-process bus and the outbox relay (Dapr adapters live in doable.dapr)."""
