// The MCP TypeScript SDK's OAuth client (what Claude Desktop builds on) against a remote MCP server:
// it prints "AUTHORIZE <url>" for the person's browser, takes the answer on a loopback callback,
// finishes the flow, calls two tools, and prints "RESULT <json>".
//
// usage: node mcp_client.mjs <mcp url> <title of the task to add> [client metadata document URL]
import http from "node:http";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const [serverUrl, title, metadataUrl] = process.argv.slice(2);

let answered;
const answer = new Promise((resolve) => (answered = resolve));
const callback = http.createServer((req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  if (url.pathname !== "/callback") {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": "text/plain" }).end("Doable is connected; you can close this window.");
  answered(url.searchParams);
});
await new Promise((resolve) => callback.listen(0, "127.0.0.1", resolve));
const redirectUrl = `http://127.0.0.1:${callback.address().port}/callback`;

const saved = {};
const provider = {
  get redirectUrl() {
    return redirectUrl;
  },
  clientMetadataUrl: metadataUrl || undefined,
  get clientMetadata() {
    return {
      client_name: "TypeScript MCP client",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      // A local program with a loopback redirect (OpenID providers refuse those for "web" clients).
      application_type: "native",
    };
  },
  clientInformation: () => saved.client,
  saveClientInformation: (client) => (saved.client = client),
  tokens: () => saved.tokens,
  saveTokens: (tokens) => (saved.tokens = tokens),
  redirectToAuthorization: (url) => console.log(`AUTHORIZE ${url.href}`),
  saveCodeVerifier: (verifier) => (saved.verifier = verifier),
  codeVerifier: () => saved.verifier,
};

const client = new Client({ name: "doable-oauth-test", version: "1.0.0" });
let transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider });
try {
  await client.connect(transport);
} catch (error) {
  if (!(error instanceof UnauthorizedError)) throw error;
  const params = await answer;
  if (!params.get("code")) throw new Error(`authorization failed: ${params.get("error")}`);
  await transport.finishAuth(params.get("code"));
  transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider });
  await client.connect(transport);
}
const added = await client.callTool({ name: "add_task", arguments: { title } });
const listed = await client.callTool({ name: "list_tasks", arguments: {} });
console.log(`RESULT ${JSON.stringify({ added, listed, scope: saved.tokens?.scope, client_id: saved.client?.client_id })}`);
await client.close();
callback.close();
