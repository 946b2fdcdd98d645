// A real external OpenID provider for the tests (panva's oidc-provider): resource indicators with
// JWT access tokens whose audience is the resource, dynamic registration, and PKCE. The person is
// "alice", signed in and consenting without a form (the consent under test is Doable's own).
//
// Any resource indicator is accepted (the audience is then that resource): Doable must refuse the
// ones that are not its own.
//
// usage: node provider.mjs <port> <jwks file>; prints "READY <issuer>"
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const [port, jwksFile] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const redirect = "http://127.0.0.1:33420/callback";
const client = (id) => ({
  client_id: id,
  token_endpoint_auth_method: "none",
  application_type: "native",
  redirect_uris: [redirect],
  grant_types: ["authorization_code", "refresh_token"],
  response_types: ["code"],
});

const provider = new Provider(issuer, {
  jwks: JSON.parse(readFileSync(jwksFile, "utf8")),
  clients: [client("test-client"), client("short-lived")],
  scopes: ["openid", "offline_access", "tasks:read", "tasks:write"],
  pkce: { required: () => true },
  findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client, oneOf) => oneOf,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator, client) => {
        return {
          scope: "tasks:read tasks:write",
          audience: indicator,
          accessTokenFormat: "jwt",
          accessTokenTTL: client.clientId === "short-lived" ? 1 : 600,
        };
      },
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

// Alice signs in and approves what was asked, at once.
provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith("/interaction/")) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const grant = new provider.Grant({ accountId: "alice", clientId: details.params.client_id });
  const asked = String(details.params.scope || "").split(" ").filter(Boolean);
  // The scopes are known to the provider (so clients may register with them) and granted for the resource.
  grant.addOIDCScope(["openid", ...asked].join(" "));
  grant.addResourceScope(details.params.resource, asked.filter((s) => s.startsWith("tasks:")).join(" "));
  const grantId = await grant.save();
  await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: "alice" }, consent: { grantId } });
});

provider.listen(Number(port), "127.0.0.1", () => console.log(`READY ${issuer}`));
