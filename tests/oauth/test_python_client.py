"""The MCP Python SDK's OAuth client runs the whole flow against `doable serve`: a 401 naming the
resource metadata, discovery of the built-in authorization server, registration (a client
metadata document, or dynamic registration for older clients), consent by the local user, PKCE
and the resource indicator, then tool calls as that user; refresh rotates, revocation ends."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from tests.oauth.conftest import DocumentHost, answer_consent
from tests.servers import Served

REDIRECT = "http://127.0.0.1:33418/callback"


class Memory:
    """The client's token storage (the SDK's TokenStorage protocol)."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def oauth_client(base: str, storage: Memory, *, metadata_url: str | None = None, scope: str | None = None) -> OAuthClientProvider:
    urls: list[str] = []

    async def redirect(url: str) -> None:
        urls.append(url)

    async def callback() -> Any:
        return await answer_consent(urls.pop())

    return OAuthClientProvider(
        server_url=f"{base}/mcp",
        client_metadata=OAuthClientMetadata(
            client_name="pytest MCP client", redirect_uris=[REDIRECT], token_endpoint_auth_method="none", scope=scope
        ),
        storage=storage,
        redirect_handler=redirect,
        callback_handler=callback,
        client_metadata_url=metadata_url,
    )


async def call(base: str, auth: httpx2.Auth, tool: str, arguments: dict[str, Any]) -> Any:
    async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
            return await client.call_tool(tool, arguments)


@pytest.mark.parametrize("registration", ["metadata document", "dynamic registration"])
async def test_the_python_sdk_client_connects_with_oauth_and_acts_as_the_local_user(
    doable: Served, document_host: DocumentHost, registration: str
) -> None:
    storage = Memory()
    metadata_url = None
    if registration == "metadata document":
        metadata_url = document_host.publish(
            "python-client.json",
            {
                "client_id": f"{document_host.base}/python-client.json",
                "client_name": "pytest MCP client",
                "redirect_uris": [REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            },
        )
    auth = oauth_client(doable.base, storage, metadata_url=metadata_url)
    added = await call(doable.base, auth, "add_task", {"title": f"via {registration}"})
    assert not added.is_error, added.content

    assert storage.tokens is not None and storage.tokens.refresh_token
    assert set(storage.tokens.scope.split()) == {"tasks:read", "tasks:write"}
    assert storage.client is not None
    if metadata_url:
        assert storage.client.client_id == metadata_url and "/python-client.json" in document_host.fetches
    else:
        assert storage.client.client_id != metadata_url  # a registered id

    # The token acts as the local user: the task is there for `doable token --user local` too.
    listed = httpx2.get(f"{doable.base}/api/tasks", headers={"Authorization": f"Bearer {doable.token('local')}"})
    assert f"via {registration}" in [t["title"] for t in listed.json()["tasks"]]
