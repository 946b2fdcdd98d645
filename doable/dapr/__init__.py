"""Talking to the Dapr sidecar over its HTTP API (async; the SDK client blocks on construction)."""
