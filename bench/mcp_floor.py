"""The MCP SDK's own floor for item 1: the same SDK client, over the same HTTP server, to an MCP
server that does nothing but answer. It lists the tools exactly as `doable serve` published them
(so the client validates the same output schemas) and answers every tools/call with the result
`doable serve` gave for that tool in the same bench run (so the same bytes cross the wire).

No MCP server built on this SDK answers faster than this one, whatever its tools do: the floor
shows how much of item 1's HTTP+MCP / direct ratio is the SDK and HTTP (client and server), and
how much is Doable's own layers. It is a baseline, measured in the same run, never a runtime.

Run by bench/mcp_latency.py as `python -m bench.mcp_floor FIXTURES` (a separate process, as
`doable serve` is), on uvloop with the HTTP protocol `doable serve` uses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def fixtures(tools: list[types.Tool], results: dict[str, types.CallToolResult]) -> dict[str, Any]:
    """What the floor answers with, as JSON: the tools as listed, one result per tool."""
    return {
        "tools": [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools],
        "results": {name: r.model_dump(mode="json", by_alias=True, exclude_none=True) for name, r in results.items()},
    }


def floor_app(data: dict[str, Any]) -> Any:
    listed = types.ListToolsResult(tools=[types.Tool.model_validate(t) for t in data["tools"]])
    answers = {name: types.CallToolResult.model_validate(r) for name, r in data["results"].items()}

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return listed

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        return answers[params.name]

    async def readyz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ready"})

    server: Server[Any] = Server("doable-floor", on_list_tools=list_tools, on_call_tool=call_tool)
    return server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        custom_starlette_routes=[Route("/readyz", readyz)],
    )


def main() -> None:
    import uvicorn

    from doable.cli import _run, _server_config
    from doable.platform.settings import Settings
    from doable.web.limits import server_options

    settings = Settings()
    app = floor_app(json.loads(Path(sys.argv[1]).read_text()))
    _run(uvicorn.Server(_server_config(app, settings, **server_options(settings))).serve())


if __name__ == "__main__":
    main()
