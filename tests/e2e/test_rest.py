"""The REST API over the same service: CRUD, filters, clear errors, isolation."""

from __future__ import annotations

from collections.abc import Callable

import httpx2

from tests.conftest import auth


async def test_crud_and_list_with_filters(http: httpx2.AsyncClient, token_for: Callable[..., str]) -> None:
    h = auth(token_for("alice"))
    r = await http.post("/api/tasks", json={"title": "Buy milk", "priority": "high", "tags": ["home"]}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == 1
    await http.post("/api/tasks", json={"title": "Write report", "tags": ["work"], "due": "2026-12-01"}, headers=h)
    r = await http.get("/api/tasks", params={"priority": ["high", "low"], "sort": "title"}, headers=h)
    assert [t["title"] for t in r.json()["tasks"]] == ["Buy milk"]
    r = await http.get("/api/tasks", params={"tags": "work", "due": "any"}, headers=h)
    assert [t["due"] for t in r.json()["tasks"]] == ["2026-12-01"]
    r = await http.patch("/api/tasks/2", json={"due": None}, headers=h)
    assert r.status_code == 200 and r.json()["due"] is None and r.json()["tags"] == ["work"]
    assert (await http.post("/api/tasks/1/complete", headers=h)).json()["completed"] is True
    assert (await http.post("/api/tasks/1/reopen", headers=h)).json()["completed"] is False
    assert (await http.delete("/api/tasks/1", headers=h)).status_code == 200
    assert (await http.get("/api/tasks/1", headers=h)).status_code == 404
    r = await http.put("/api/profile", json={"timezone": "Asia/Tokyo"}, headers=h)
    assert r.json()["timezone"] == "Asia/Tokyo"


async def test_bad_input_is_a_clear_4xx_naming_the_field(
    http: httpx2.AsyncClient, token_for: Callable[..., str]
) -> None:
    h = auth(token_for("alice"))
    cases = [
        ({"title": ""}, "title"),
        ({"title": "x", "due": "31/12/2026"}, "due"),
        ({"title": "x", "tags": ["a b"]}, "tags"),
        ({"title": "x", "priority": "urgent"}, "priority"),
        ({"title": "x", "surprise": 1}, "surprise"),
        ({"title": 42}, "title"),
        ({}, "title"),
    ]
    for body, field in cases:
        r = await http.post("/api/tasks", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
        assert field in r.json()["message"], r.json()
    r = await http.get("/api/tasks", params={"limit": 1000}, headers=h)
    assert r.status_code == 422 and "limit" in r.json()["message"]
    r = await http.get("/api/tasks/0", headers=h)
    assert r.status_code == 422
    r = await http.get("/api/tasks/99", headers=h)
    assert r.status_code == 404 and r.json() == {"error": "not_found", "message": "task 99 not found"}
    r = await http.post("/api/tasks", content=b"{not json", headers={**h, "content-type": "application/json"})
    assert r.status_code == 422
    assert (await http.get("/api/tasks", headers=h)).json()["total"] == 0


async def test_body_size_limit(http: httpx2.AsyncClient, token_for: Callable[..., str]) -> None:
    r = await http.post(
        "/api/tasks", content=b"x" * 2_000_000, headers={**auth(token_for("a")), "content-type": "application/json"}
    )
    assert r.status_code == 413
    assert "at most" in r.json()["message"]


async def test_users_cannot_see_or_touch_each_others_tasks(
    http: httpx2.AsyncClient, token_for: Callable[..., str]
) -> None:
    alice, bob = auth(token_for("alice")), auth(token_for("bob"))
    await http.post("/api/tasks", json={"title": "Alice only"}, headers=alice)
    assert (await http.get("/api/tasks", headers=bob)).json()["tasks"] == []
    assert (await http.get("/api/tasks", params={"search": "alice"}, headers=bob)).json()["total"] == 0
    for method, path in [
        ("GET", "/api/tasks/1"),
        ("PATCH", "/api/tasks/1"),
        ("POST", "/api/tasks/1/complete"),
        ("DELETE", "/api/tasks/1"),
    ]:
        r = await http.request(method, path, headers=bob, json={"title": "x"} if method == "PATCH" else None)
        assert r.status_code == 404, (method, path, r.text)
    assert (await http.get("/api/tasks/1", headers=alice)).json()["title"] == "Alice only"


async def test_health_readiness_metrics_and_openapi(http: httpx2.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok"}
    assert "doable_http_request_duration_seconds" in (await http.get("/metrics")).text
    spec = (await http.get("/openapi.json")).json()
    assert "/api/tasks" in spec["paths"] and "/api/tasks/{task_id}" in spec["paths"]


async def test_out_of_range_ids_are_a_422_not_a_500(http: httpx2.AsyncClient, token_for: Callable[..., str]) -> None:
    # Regression (found by schemathesis): ids beyond 64 bits reached the database and failed there.
    r = await http.post("/api/notifications/read", json={"ids": [2**70, -5]}, headers=auth(token_for("alice")))
    assert r.status_code == 422 and "ids" in r.json()["message"]
