"""The console's server side, in-process: static files and their headers, the config, and the
rules of local sign-in (embedded mode, loopback only, no JWKS, no proxy, no DNS rebinding)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from doable import __version__
from doable.bootstrap import build
from doable.platform.settings import Settings
from doable.web.app import create_app
from doable.web.console import LOCAL_TOKEN_TTL_SECONDS, STATIC
from tests.conftest import auth, lifespan_running


@pytest.fixture
def settings(data_dir: Any) -> Settings:
    """The embedded single-user default: no configured secret (one is generated under the data dir)."""
    return Settings(data_dir=data_dir, log_format="console", host="127.0.0.1", port=8000)


@asynccontextmanager
async def console(
    settings: Settings, client: tuple[str, int] = ("127.0.0.1", 50000), *, label: dict[str, Any] | None = None
) -> AsyncIterator[httpx2.AsyncClient]:
    """The app over `settings`; `label` changes settings after the (embedded) runtime is built."""
    runtime = await build(settings)
    if label:
        runtime.settings = settings.model_copy(update=label)
        # What the Dapr assembly would say of its process: one of several replicas, no local user.
        runtime.standalone = runtime.settings.runtime == "embedded"
    try:
        app = create_app(runtime)
        async with lifespan_running(app):
            transport = httpx2.ASGITransport(app=app, client=client)
            async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
                yield http
    finally:
        await runtime.aclose()


async def test_the_console_page_is_served_at_the_root_with_a_strict_policy(http: httpx2.AsyncClient) -> None:
    page = await http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "https:" not in policy and "openai" not in policy  # no external requests without ChatKit
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/console/app.js">' in page.text
    assert (await http.get("/console", follow_redirects=False)).headers["location"] == "/"


async def test_every_module_the_page_loads_is_served(http: httpx2.AsyncClient) -> None:
    page = (await http.get("/")).text
    wanted = set(re.findall(r'(?:src|href)="(/console/[^"]+)"', page))
    for script in STATIC.glob("*.js"):
        wanted |= {f"/console/{name}" for name in re.findall(r'from "\./([a-z]+\.js)"', script.read_text())}
    assert {"/console/app.js", "/console/app.css", "/console/api.js", "/console/tasks.js"} <= wanted
    for path in wanted:
        response = await http.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(("text/javascript", "text/css")), path


@pytest.mark.parametrize(
    "path", ["/console/missing.js", "/console/..%2Fconsole.py", "/console/.hidden.js", "/console/app.py"]
)
async def test_nothing_else_is_served(http: httpx2.AsyncClient, path: str) -> None:
    assert (await http.get(path)).status_code == 404


async def test_the_mcp_endpoint_and_its_metadata_still_answer_beside_the_console(http: httpx2.AsyncClient) -> None:
    assert (await http.get("/.well-known/oauth-protected-resource/mcp")).status_code == 200
    assert (await http.post("/mcp", json={})).status_code == 401


async def test_config_says_local_sign_in_is_available_on_loopback(http: httpx2.AsyncClient) -> None:
    config = (await http.get("/api/console/config")).json()
    assert config == {"local_signin": True, "chatkit_domain_key": None, "version": __version__}


async def test_local_sign_in_mints_a_short_lived_token_for_the_local_user(
    http: httpx2.AsyncClient, app: Any, settings: Settings
) -> None:
    minted = await http.post("/api/local/token")
    assert minted.status_code == 200 and minted.headers["cache-control"] == "no-store"
    body = minted.json()
    assert (
        body["user_id"] == settings.local_user == "local" and body["expires_in"] == LOCAL_TOKEN_TTL_SECONDS == 8 * 3600
    )
    identity = await app.state.deps.verifier.verify(body["token"])
    assert identity.user_id == "local" and identity.claims["exp"] - identity.claims["iat"] == 8 * 3600
    assert (await http.get("/api/tasks", headers=auth(body["token"]))).status_code == 200

    assert (await http.post("/api/local/token", json={"user": "local"})).json()["user_id"] == "local"
    assert (await http.post("/api/local/token", json={"user": "x", "admin": True})).status_code == 422


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "doable.example.com"},  # DNS rebinding, or a public name
        {"X-Forwarded-For": "203.0.113.9"},  # a reverse proxy on this machine
        {"Forwarded": "for=203.0.113.9"},
        {"Origin": "http://evil.example"},  # another site's page
    ],
)
async def test_local_sign_in_refuses_what_is_not_plainly_local(
    http: httpx2.AsyncClient, headers: dict[str, str]
) -> None:
    refused = await http.post("/api/local/token", headers=headers)
    assert refused.status_code == 404 and "token" not in refused.text
    assert (await http.get("/api/console/config", headers=headers)).json()["local_signin"] is False


async def test_local_sign_in_accepts_localhost_names_and_a_same_machine_origin(http: httpx2.AsyncClient) -> None:
    for headers in ({"Host": "localhost:8000"}, {"Host": "[::1]:8000"}, {"Origin": "http://localhost:8000"}):
        assert (await http.post("/api/local/token", headers=headers)).status_code == 200, headers


async def test_local_sign_in_refuses_a_remote_client(settings: Settings) -> None:
    async with console(settings, client=("203.0.113.7", 40000)) as http:
        assert (await http.post("/api/local/token")).status_code == 404
        assert (await http.get("/api/console/config")).json()["local_signin"] is False


@pytest.mark.parametrize(
    ("update", "label"),
    [
        ({}, {"runtime": "dapr"}),  # a Dapr runtime needs a sidecar: the embedded one, labelled dapr
        ({"console_local_signin": False}, None),
        ({"jwt_secret": None, "jwt_jwks_url": "https://idp.example.com/.well-known/jwks.json"}, None),
        # A configured shared secret (Better Auth's): its users are real accounts, not "local".
        ({"jwt_secret": SecretStr("b" * 40)}, None),
    ],
    ids=["dapr", "disabled", "jwks", "shared secret configured"],
)
async def test_local_sign_in_exists_only_in_embedded_mode_with_a_shared_secret(
    settings: Settings, update: dict[str, Any], label: dict[str, Any] | None
) -> None:
    async with console(settings.model_copy(update=update), label=label) as http:
        assert (await http.post("/api/local/token")).status_code == 404
        assert (await http.get("/api/console/config")).json()["local_signin"] is False


async def test_a_chatkit_domain_key_switches_the_console_to_chatkit_and_allows_its_cdn(settings: Settings) -> None:
    async with console(settings.model_copy(update={"chatkit_domain_key": "domain_pk_123"})) as http:
        assert (await http.get("/api/console/config")).json()["chatkit_domain_key"] == "domain_pk_123"
        policy = (await http.get("/")).headers["content-security-policy"]
        assert "script-src 'self' https://cdn.platform.openai.com" in policy
        assert "frame-src https://cdn.platform.openai.com" in policy


def test_the_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOABLE_CHATKIT_DOMAIN_KEY", "domain_pk_env")
    monkeypatch.setenv("DOABLE_CONSOLE_LOCAL_SIGNIN", "false")
    settings = Settings(jwt_secret=SecretStr("s" * 40))
    assert settings.chatkit_domain_key == "domain_pk_env" and settings.console_local_signin is False


# Every name but the local user's, including valid user ids and the names other users have.
@pytest.mark.parametrize("name", ["alice", "admin", "local ", "LOCAL", "not a user id", "", "local\x00"])
async def test_local_sign_in_mints_only_for_the_configured_local_user(http: httpx2.AsyncClient, name: str) -> None:
    refused = await http.post("/api/local/token", json={"user": name})
    assert refused.status_code in (403, 422) and "token" not in refused.json(), refused.text


async def test_local_sign_in_with_a_configured_secret_needs_the_explicit_setting(settings: Settings) -> None:
    shared = settings.model_copy(update={"jwt_secret": SecretStr("b" * 40), "console_local_signin": True})
    async with console(shared) as http:
        minted = await http.post("/api/local/token")
        assert minted.status_code == 200 and minted.json()["user_id"] == "local"
        assert (await http.post("/api/local/token", json={"user": "alice"})).status_code == 403


def test_local_sign_in_defaults_to_the_single_user_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOABLE_CONSOLE_LOCAL_SIGNIN", raising=False)
    assert Settings().console_local_signin is None
    monkeypatch.setenv("DOABLE_CONSOLE_LOCAL_SIGNIN", "true")
    assert Settings().console_local_signin is True
