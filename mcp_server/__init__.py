"""The MCP server: the task tools (mcp_server.tools, built into a server by mcp_server.server.build_mcp),
prompts, resources, and the guard and token verifier in front of the HTTP endpoint."""
