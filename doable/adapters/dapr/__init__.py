"""Dapr mode's adapters: the sidecar's HTTP API (async; the SDK client blocks on construction), the task
repository and the other stores in Dapr state, pub/sub and jobs, and service invocation between apps."""
