"""The task domain: entities, rules and events. Imports no web, database or Dapr library."""
