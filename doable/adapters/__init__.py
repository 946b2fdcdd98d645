"""Adapters: the ports (doable.ports) implemented once per family. `sql` (SQLite, PostgreSQL), `embedded`
(the in-process bus, outbox relay and job loop) and `dapr` (the sidecar's state, pub/sub and jobs). Only the
composition root (doable.bootstrap) chooses among them."""
