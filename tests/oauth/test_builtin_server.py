"""The built-in authorization server and the resource server's answers, over HTTP against
`doable serve`: metadata, challenges, scopes, the resource indicator, refresh rotation,
revocation, and the consent page's own guards."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2

from tests.oauth.conftest import answer_consent
from tests.servers import Served

REDIRECT = "http://127.0.0.1:33419/callback"
MCP_HEADERS = {"accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}


def rpc(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}


def call_tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return rpc("tools/call", {"name": name, "arguments": arguments})


def challenge(response: httpx2.Response) -> dict[str, str]:
    value = response.headers["www-authenticate"]
    assert value.startswith("Bearer "), value
    return dict(part.split("=", 1) for part in value[len("Bearer ") :].split(", "))


async def register(base: str) -> str:
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            f"{base}/register",
            json={"client_name": "test client", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"},
        )
    assert response.status_code == 201, response.text
    return str(response.json()["client_id"])


async def tokens(base: str, client_id: str, *, scope: str = "tasks:read tasks:write", resource: str | None = None) -> dict[str, Any]:
    """Access and refresh token through the authorization-code flow with PKCE, consent approved."""
    verifier = secrets.token_urlsafe(48)
    challenge_ = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": challenge_,
        "code_challenge_method": "S256",
        "state": "s1",
        "scope": scope,
        "resource": resource or f"{base}/mcp",
    }
    answer = await answer_consent(f"{base}/authorize?{urlencode(query)}")
    assert answer.state == "s1" and answer.iss == base
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            f"{base}/token",
            data={
                "grant_type": "authorization_code",
                "code": answer.code,
                "redirect_uri": REDIRECT,
                "client_id": client_id,
                "code_verifier": verifier,
                "resource": f"{base}/mcp",
            },
        )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_metadata_names_the_built_in_server_its_scopes_and_pkce(doable: Served) -> None:
    async with httpx2.AsyncClient() as http:
        resource = (await http.get(f"{doable.base}/.well-known/oauth-protected-resource/mcp")).json()
        server = (await http.get(f"{doable.base}/.well-known/oauth-authorization-server")).json()
    assert resource["resource"] == f"{doable.base}/mcp"
    assert resource["authorization_servers"] == [doable.base]
    assert resource["scopes_supported"] == ["tasks:read", "tasks:write"]
    assert server["issuer"] == doable.base
    assert server["code_challenge_methods_supported"] == ["S256"]
    assert server["client_id_metadata_document_supported"] is True
    assert server["authorization_response_iss_parameter_supported"] is True
    assert server["registration_endpoint"] == f"{doable.base}/register"
    assert server["revocation_endpoint"] == f"{doable.base}/revoke"


async def test_a_request_without_a_token_is_told_where_to_authorize_and_which_scopes(doable: Served) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{doable.base}/mcp", json=rpc("tools/list"), headers=MCP_HEADERS)
    assert response.status_code == 401
    assert challenge(response) == {
        "scope": '"tasks:read tasks:write"',
        "resource_metadata": f'"{doable.base}/.well-known/oauth-protected-resource/mcp"',
    }


async def test_a_read_only_token_reads_and_gets_403_insufficient_scope_for_a_change(doable: Served) -> None:
    granted = await tokens(doable.base, await register(doable.base), scope="tasks:read")
    assert granted["scope"] == "tasks:read"
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {granted['access_token']}"}
    async with httpx2.AsyncClient() as http:
        listed = await http.post(f"{doable.base}/mcp", json=call_tool("list_tasks", {}), headers=headers)
        added = await http.post(f"{doable.base}/mcp", json=call_tool("add_task", {"title": "nope"}), headers=headers)
    assert listed.status_code == 200 and "isError" not in listed.text.replace('"isError":false', "")
    assert added.status_code == 403
    assert challenge(added)["error"] == '"insufficient_scope"'
    assert challenge(added)["scope"] == '"tasks:write"'
    assert challenge(added)["resource_metadata"] == f'"{doable.base}/.well-known/oauth-protected-resource/mcp"'


async def test_a_token_for_another_resource_is_not_issued(doable: Served) -> None:
    client_id = await register(doable.base)
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": "x" * 43,
        "state": "s",
        "resource": "https://elsewhere.example/mcp",
    }
    async with httpx2.AsyncClient() as http:
        response = await http.get(f"{doable.base}/authorize?{urlencode(query)}")
    assert response.status_code == 302
    error = parse_qs(urlsplit(response.headers["location"]).query)
    assert error["error"] == ["invalid_target"] and error["state"] == ["s"]


async def test_refresh_tokens_rotate_and_revocation_ends_a_token_at_once(doable: Served) -> None:
    client_id = await register(doable.base)
    first = await tokens(doable.base, client_id)
    async with httpx2.AsyncClient() as http:

        async def refresh(token: str) -> httpx2.Response:
            return await http.post(
                f"{doable.base}/token", data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
            )

        async def tools_list(access: str) -> httpx2.Response:
            headers = {**MCP_HEADERS, "Authorization": f"Bearer {access}"}
            return await http.post(f"{doable.base}/mcp", json=rpc("tools/list"), headers=headers)

        second = await refresh(first["refresh_token"])
        assert second.status_code == 200 and second.json()["refresh_token"] != first["refresh_token"]
        reused = await refresh(first["refresh_token"])
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

        access = second.json()["access_token"]
        assert (await tools_list(access)).status_code == 200
        revoked = await http.post(f"{doable.base}/revoke", data={"token": access, "client_id": client_id})
        assert revoked.status_code == 200
        after = await tools_list(access)
        assert after.status_code == 401
        assert challenge(after)["error"] == '"invalid_token"'
        assert challenge(after)["error_description"] == '"token was revoked"'
        # ... and the refresh token that came with it is gone too.
        assert (await refresh(second.json()["refresh_token"])).status_code == 400


async def test_a_denied_consent_returns_access_denied_to_the_client(doable: Served) -> None:
    client_id = await register(doable.base)
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": "y" * 43,
        "state": "d",
    }
    try:
        await answer_consent(f"{doable.base}/authorize?{urlencode(query)}", approve=False)
    except PermissionError as exc:
        assert str(exc) == "access_denied"
    else:
        raise AssertionError("a denied consent gave a code")


async def test_the_consent_form_refuses_a_post_without_its_cookie_and_cannot_be_framed(doable: Served) -> None:
    client_id = await register(doable.base)
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "code_challenge": "z" * 43}
    async with httpx2.AsyncClient() as http:
        page_url = (await http.get(f"{doable.base}/authorize?{urlencode(query)}")).headers["location"]
        page = await http.get(page_url)
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert "test client" in page.text and "127.0.0.1:33419" in page.text
        request_id = parse_qs(urlsplit(page_url).query)["request"][0]
    # Another site's form: no cookie (SameSite=Strict), a guessed token.
    async with httpx2.AsyncClient() as other:
        forged = await other.post(
            f"{doable.base}/oauth/consent", data={"request": request_id, "csrf": "guess", "decision": "approve"}
        )
    assert forged.status_code == 403 and "location" not in forged.headers


async def test_doables_own_tokens_keep_every_scope_on_mcp(doable: Served) -> None:
    """Tokens from `doable token` (and the console) predate scopes: on /mcp they still change tasks."""
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {doable.token('local')}"}
    async with httpx2.AsyncClient() as http:
        added = await http.post(f"{doable.base}/mcp", json=call_tool("add_task", {"title": "own token"}), headers=headers)
    assert added.status_code == 200 and '"isError":true' not in added.text
