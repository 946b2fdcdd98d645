"""Doable as a resource server of a real external OpenID provider (oidc-provider, started here):
discovery of its keys, JWT access tokens bound to the MCP resource (RFC 8707), and the refusals:
another resource, another issuer, a missing scope, an expired token."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.oauth.conftest import NODE_DIR, node
from tests.oauth.test_builtin_server import MCP_HEADERS, call_tool, challenge, rpc
from tests.oauth.test_python_client import Memory, call
from tests.servers import Served, free_port, serve_doable

REDIRECT = "http://127.0.0.1:33420/callback"


@pytest.fixture(scope="module")
def jwks_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**jwt.algorithms.RSAAlgorithm.to_jwk(key, as_dict=True), "kid": "op-1", "alg": "RS256", "use": "sig"}
    path = tmp_path_factory.mktemp("op") / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return path


def start_provider(jwks_file: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        ["node", str(NODE_DIR / "provider.mjs"), str(port), str(jwks_file)],
        cwd=NODE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:  # it warns first (an in-memory store, and Node 20 not being 22)
        seen.append(line)
        if line.startswith("READY "):
            return process, line.split()[1]
        if len(seen) > 20:
            break
    process.kill()
    raise AssertionError("the OpenID provider did not start:\n" + "".join(seen))


@pytest.fixture(scope="module")
def providers(node_modules: Path, jwks_file: Path) -> Iterator[tuple[str, str]]:
    """Two providers with the same keys at two issuers: Doable trusts the first only."""
    first, issuer = start_provider(jwks_file)
    second, other_issuer = start_provider(jwks_file)
    try:
        yield issuer, other_issuer
    finally:
        for process in (first, second):
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def doable_rs(tmp_path_factory: pytest.TempPathFactory, providers: tuple[str, str]) -> Iterator[Served]:
    with serve_doable(
        tmp_path_factory.mktemp("doable-rs"),
        DOABLE_OAUTH_ISSUER=providers[0],
        DOABLE_JWT_LEEWAY_SECONDS="0",
        DOABLE_AUTH_FAILURES_PER_MINUTE="0",
    ) as served:
        yield served


async def follow_to_callback(url: str, callback: str = REDIRECT) -> dict[str, list[str]]:
    """The provider's redirects (sign-in and consent happen without a form) up to `callback`."""
    async with httpx2.AsyncClient(follow_redirects=False, timeout=10) as http:
        for _ in range(10):
            if url.startswith(callback + "?"):
                return parse_qs(urlsplit(url).query)
            response = await http.get(url)
            assert response.status_code in (302, 303), response.text
            url = urljoin(url, response.headers["location"])
    raise AssertionError("no redirect to the callback")


async def provider_token(issuer: str, *, resource: str, scope: str = "tasks:read tasks:write", client_id: str = "test-client") -> str:
    verifier = secrets.token_urlsafe(48)
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        "scope": scope,
        "resource": resource,
        "state": "x",
    }
    answer = await follow_to_callback(f"{issuer}/auth?{urlencode(query)}")
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            f"{issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": answer["code"][0],
                "redirect_uri": REDIRECT,
                "client_id": client_id,
                "code_verifier": verifier,
                "resource": resource,
            },
        )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def mcp(base: str, token: str, body: dict[str, Any]) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        return await http.post(f"{base}/mcp", json=body, headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"})


async def test_the_python_sdk_client_signs_in_at_the_external_provider(doable_rs: Served, providers: tuple[str, str]) -> None:
    from mcp.client.auth import OAuthClientProvider
    from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

    urls: list[str] = []

    async def redirect(url: str) -> None:
        urls.append(url)

    async def callback() -> AuthorizationCodeResult:
        answer = await follow_to_callback(urls.pop())
        return AuthorizationCodeResult(code=answer["code"][0], state=answer["state"][0], iss=answer.get("iss", [None])[0])

    storage = Memory()
    auth = OAuthClientProvider(
        server_url=f"{doable_rs.base}/mcp",
        client_metadata=OAuthClientMetadata(client_name="pytest MCP client", redirect_uris=[REDIRECT], token_endpoint_auth_method="none"),
        storage=storage,
        redirect_handler=redirect,
        callback_handler=callback,
    )
    added = await call(doable_rs.base, auth, "add_task", {"title": "signed in elsewhere"})
    assert not added.is_error, added.content
    assert storage.client is not None and storage.client.client_id  # registered at the provider
    claims = jwt.decode(storage.tokens.access_token, options={"verify_signature": False})  # type: ignore[union-attr]
    assert claims["iss"] == providers[0] and claims["aud"] == f"{doable_rs.base}/mcp" and claims["sub"] == "alice"
    async with httpx2.AsyncClient() as http:
        metadata = (await http.get(f"{doable_rs.base}/.well-known/oauth-protected-resource/mcp")).json()
        assert (await http.get(f"{doable_rs.base}/.well-known/oauth-authorization-server")).status_code == 404
    assert metadata["authorization_servers"] == [providers[0]]


async def test_tokens_for_another_resource_or_from_another_issuer_get_401(doable_rs: Served, providers: tuple[str, str]) -> None:
    issuer, other_issuer = providers
    good = await provider_token(issuer, resource=f"{doable_rs.base}/mcp")
    assert (await mcp(doable_rs.base, good, rpc("tools/list"))).status_code == 200

    elsewhere = await provider_token(issuer, resource="https://other.example/mcp")
    refused = await mcp(doable_rs.base, elsewhere, rpc("tools/list"))
    assert refused.status_code == 401
    assert challenge(refused)["error_description"] == '"token audience is not accepted"'
    assert challenge(refused)["resource_metadata"] == f'"{doable_rs.base}/.well-known/oauth-protected-resource/mcp"'

    # Same keys, same resource, another issuer.
    impostor = await provider_token(other_issuer, resource=f"{doable_rs.base}/mcp")
    refused = await mcp(doable_rs.base, impostor, rpc("tools/list"))
    assert refused.status_code == 401 and challenge(refused)["error"] == '"invalid_token"'


async def test_a_token_without_the_write_scope_gets_403_for_a_change(doable_rs: Served, providers: tuple[str, str]) -> None:
    reader = await provider_token(providers[0], resource=f"{doable_rs.base}/mcp", scope="tasks:read")
    assert (await mcp(doable_rs.base, reader, call_tool("list_tasks", {}))).status_code == 200
    refused = await mcp(doable_rs.base, reader, call_tool("complete_task", {"task_id": 1}))
    assert refused.status_code == 403
    assert challenge(refused)["error"] == '"insufficient_scope"' and challenge(refused)["scope"] == '"tasks:write"'


async def test_an_expired_token_gets_401(doable_rs: Served, providers: tuple[str, str]) -> None:
    import asyncio

    short = await provider_token(providers[0], resource=f"{doable_rs.base}/mcp", client_id="short-lived")
    await asyncio.sleep(2.2)  # the provider's 1-second lifetime, with no leeway configured
    refused = await mcp(doable_rs.base, short, rpc("tools/list"))
    assert refused.status_code == 401 and challenge(refused)["error_description"] == '"token expired"'


async def test_the_typescript_sdk_client_signs_in_at_the_external_provider(
    doable_rs: Served, providers: tuple[str, str], node_modules: Path
) -> None:
    async with node("mcp_client.mjs", f"{doable_rs.base}/mcp", "TypeScript, signed in elsewhere", node_modules=node_modules) as run:
        authorize = await run.line_starting("AUTHORIZE ")
        assert authorize.startswith(f"{providers[0]}/auth?")
        callback = parse_qs(urlsplit(authorize).query)["redirect_uri"][0]
        answer = await follow_to_callback(authorize, callback)
        async with httpx2.AsyncClient() as http:  # the browser lands on the client's callback
            assert (await http.get(f"{callback}?{urlencode({k: v[0] for k, v in answer.items()})}")).status_code == 200
        result = json.loads(await run.line_starting("RESULT "))
    assert not result["added"].get("isError"), result["added"]
    assert "TypeScript, signed in elsewhere" in [t["title"] for t in result["listed"]["structuredContent"]["tasks"]]
