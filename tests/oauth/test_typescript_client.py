"""The MCP TypeScript SDK's OAuth client (`@modelcontextprotocol/sdk`, what Claude Desktop builds
on) connects to `doable serve` with a client metadata document; the person approves on the
consent page in Chromium, whose answer reaches the client's loopback callback."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.oauth.conftest import DocumentHost, node
from tests.servers import Served


async def test_the_typescript_sdk_client_connects_through_the_consent_page_in_chromium(
    doable: Served, document_host: DocumentHost, browser: Any, node_modules: Path
) -> None:
    # Like a native app's document: a loopback redirect URI without a port, for the client listens
    # on a free one each time (RFC 8252 7.3).
    metadata_url = document_host.publish(
        "typescript-client.json",
        {
            "client_id": f"{document_host.base}/typescript-client.json",
            "client_name": "TypeScript MCP client",
            "redirect_uris": ["http://127.0.0.1/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        },
    )
    async with node("mcp_client.mjs", f"{doable.base}/mcp", "from TypeScript", metadata_url, node_modules=node_modules) as run:
        authorize = await run.line_starting("AUTHORIZE ")
        page = await browser.new_page()
        await page.goto(authorize)
        assert await page.title() == "Connect to Doable"
        assert "TypeScript MCP client" in await page.inner_text("h1")
        await page.click("button[value=approve]")
        await page.wait_for_url(re.compile(r"^http://127\.0\.0\.1:\d+/callback\?code="))
        assert "Doable is connected" in await page.inner_text("body")
        result = json.loads(await run.line_starting("RESULT "))
    assert result["client_id"] == metadata_url
    assert set(result["scope"].split()) == {"tasks:read", "tasks:write"}
    assert not result["added"].get("isError"), result["added"]
    titles = [t["title"] for t in result["listed"]["structuredContent"]["tasks"]]
    assert "from TypeScript" in titles
