"""The MCP tool server: Doable's task tools for agents and MCP clients (Claude Desktop, the chat agent)."""

from mcp_server.server import build_mcp

__all__ = ["build_mcp"]
