"""The embedded end-to-end tests (tests/e2e: MCP tools over HTTP with the SDK's client, REST),
run unchanged against the Dapr-mode API: this folder's conftest overrides `runtime` and `app`,
so every test below talks to an app whose state, events and secrets go through the sidecar double.
"""

from __future__ import annotations

import httpx2
import pytest

from tests.e2e.test_mcp_tools import *  # noqa: F403  (collected again here, in Dapr mode)
from tests.e2e.test_rest import *  # noqa: F403

pytestmark = pytest.mark.postgres


async def test_health_readiness_metrics_and_openapi(http: httpx2.AsyncClient) -> None:
    """Replaces the embedded version: in Dapr mode readiness reports the sidecar, not a database."""
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"sidecar": "ok"}
    assert "doable_http_request_duration_seconds" in (await http.get("/metrics")).text
    spec = (await http.get("/openapi.json")).json()
    assert "/api/tasks" in spec["paths"] and "/api/tasks/{task_id}" in spec["paths"]
    # Dapr's routes are not part of the public API.
    assert not any(p.startswith(("/internal", "/dapr", "/events")) for p in spec["paths"])
