"""OAuth for remote MCP clients: Doable as a resource server (scopes, challenges, metadata), the
verification of an external authorization server's tokens, and the built-in authorization server
of the embedded single-user default (consent by the local user)."""
