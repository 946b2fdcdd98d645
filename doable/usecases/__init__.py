"""The use cases' shared machinery: the runner every use case runs on (unit of work, retries,
idempotency, dry runs, undo records, events), the per-task steps several use cases share, and
the query a list request becomes. The use cases themselves are doable.service (tasks and the
profile), doable.series_service, doable.bulk and doable.undo."""
