"""`Mcp-Param-*` headers (protocol 2026-07-28) are still checked for a tool that declares one
(`x-mcp-header` in its input schema), while Doable's tools, which declare none, skip the SDK's walk
of their whole schema on every call (DoableMcp._tool_input_schema)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx2
from mcp.server.mcpserver.tools import Tool
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import Field

from mcp_server.server import DoableMcp, registered_tools

META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


async def regional(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})]) -> str:
    return f"served in {region}"


async def plain(word: str) -> str:
    return word


def _server() -> DoableMcp:
    tools = [Tool.from_function(regional), Tool.from_function(plain)]
    return DoableMcp(deps=None, tools=tools, middleware=[], request_state=None)  # type: ignore[arg-type]


async def _call(mcp: DoableMcp, name: str, arguments: dict[str, Any], headers: dict[str, str]) -> httpx2.Response:
    app = mcp.streamable_http_app(
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": META},
    }
    async with mcp.session_manager.run():
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test") as http:
            return await http.post(
                "/mcp",
                content=json.dumps(body),
                headers={
                    "content-type": "application/json",
                    "accept": "application/json, text/event-stream",
                    "mcp-protocol-version": "2026-07-28",
                    "mcp-method": "tools/call",
                    "mcp-name": name,
                    **headers,
                },
            )


def test_the_sdk_asks_doable_for_the_schema_and_gets_one_only_where_a_header_is_declared() -> None:
    mcp = _server()
    lookup = mcp._lowlevel_server.get_tool_input_schema  # an SDK rename would make this test fail
    assert lookup is not None and lookup.__func__ is DoableMcp._tool_input_schema  # type: ignore[attr-defined]
    assert lookup("regional") is not None
    assert lookup("plain") is None
    assert lookup("missing") is None
    declaring = [t.name for t in registered_tools() if '"x-mcp-header"' in json.dumps(t.parameters)]
    assert declaring == []  # Doable's own tools: nothing to check, so nothing is walked


async def test_a_declared_header_that_disagrees_with_its_argument_is_still_refused() -> None:
    refused = await _call(_server(), "regional", {"region": "eu"}, {"mcp-param-region": "us"})
    assert refused.status_code == 400, refused.text
    agreed = await _call(_server(), "regional", {"region": "eu"}, {"mcp-param-region": "eu"})
    assert agreed.status_code == 200 and "served in eu" in agreed.text, agreed.text


async def test_a_tool_that_declares_no_header_takes_a_call_whatever_headers_come_with_it() -> None:
    answered = await _call(_server(), "plain", {"word": "hello"}, {"mcp-param-word": "other"})
    assert answered.status_code == 200 and "hello" in answered.text, answered.text
