"""The workers: reminders, notifications, recurrence and audit handler sets.

Each is transport-neutral code over the ports in `doable.ports.messages` and the stores it names;
`workers.registry` assembles them, `workers.app` serves one as its own Dapr app. In embedded
mode `doable serve` runs all four in-process. Nothing here imports the chat agent.
"""
