"""Prometheus metrics, served at /metrics by every process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_LATENCY = Histogram(
    "doable_http_request_duration_seconds", "HTTP request latency", ["method", "route", "status"]
)
TOOL_LATENCY = Histogram("doable_mcp_tool_duration_seconds", "MCP tool latency", ["tool", "outcome"])
EVENTS_PUBLISHED = Counter("doable_events_published_total", "Events published", ["topic"])
EVENTS_CONSUMED = Counter("doable_events_consumed_total", "Events consumed", ["topic", "outcome"])
OUTBOX_DEPTH = Gauge("doable_outbox_depth", "Task events recorded but not yet published")
EVENTS_PUBLISH_FAILED = Counter("doable_events_publish_failed_total", "Publish attempts that failed", ["topic"])
EVENTS_DEAD_LETTERED = Counter("doable_events_dead_lettered_total", "Events given up on", ["topic", "subscription"])
REMINDERS_FIRED = Counter("doable_reminders_fired_total", "Reminder Events published", ["source"])
REMINDER_LATENESS = Histogram(
    "doable_reminder_lateness_seconds",
    "How long after its time a reminder was sent",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
)
NOTIFICATIONS_DELIVERED = Counter("doable_notifications_delivered_total", "Notifications delivered", ["channel"])
NOTIFICATIONS_FAILED = Counter("doable_notifications_failed_total", "Notification deliveries given up", ["channel"])
JOBS_FIRED = Counter("doable_jobs_fired_total", "Embedded scheduler job firings", ["owner", "outcome"])
LIVE_CONNECTIONS = Gauge("doable_live_connections", "Open live (SSE) streams")
