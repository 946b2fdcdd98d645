"""The use cases every transport calls, and their shared machinery.

- `service.py`: `TaskService`, the facade each transport gets (its use cases answer `Outcome`s; plain-value
  methods for callers that present nothing).
- `tasks.py` (tasks and the profile), `series.py`, `series_edits.py`, `bulk.py`, `undo.py`: the use cases.
- `runner.py` (unit of work, retries, idempotency, dry runs, events), `undo_log.py`, `task_steps.py`,
  `list_query.py`, `next_occurrence.py`: what they share.
- `views.py` and `inputs.py`: the shapes they answer and take; `inbox.py`, `history.py`, `live.py`: the
  notification inbox, task history and live streams."""
