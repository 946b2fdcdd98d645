"""Job scheduling adapters: the embedded, SQL-persisted scheduler (Dapr Jobs live in doable.dapr)."""
