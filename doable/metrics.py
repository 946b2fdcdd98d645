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
