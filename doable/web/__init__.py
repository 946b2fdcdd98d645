"""The HTTP transport: FastAPI app with MCP, REST, health and metrics."""
