"""The double applies Dapr manifests: component scopes, keyPrefix, secret scopes, access control.

Sources (dapr/dapr, same at v1.16.19, v1.17.13, v1.18.3): component scoping and the state-store
errors in `pkg/api/http/http.go` getStateStoreWithRequestValidation / `pkg/api/errors/state.go`;
secrets in `pkg/api/universal/secrets.go`, `pkg/config/configuration.go`,
`pkg/messages/predefined.go`; access control in `pkg/acl/acl.go`, `pkg/config/acl_trie.go`,
`pkg/api/grpc/daprinternal.go`, `pkg/api/http/directmessaging.go`.
"""

from __future__ import annotations

from tests.dapr_double.manifests import Manifests, render_chart

from .conftest import DoubleFactory
from .recording_app import RecordingApp

DEPLOYMENT = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore, namespace: prod}
spec:
  type: state.postgresql
  version: v1
  metadata:
  - {name: keyPrefix, value: name}
  - name: connectionString
    secretKeyRef: {name: pg, key: dsn}
scopes: [api, worker]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: private, namespace: prod}
spec: {type: state.postgresql, version: v1, metadata: []}
scopes: [worker]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: vault, namespace: prod}
spec: {type: secretstores.local.file, version: v1, metadata: []}
---
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: config, namespace: prod}
spec:
  secrets:
    scopes:
    - {storeName: vault, defaultAccess: deny, allowedSecrets: [app-secrets]}
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: worker
      defaultAction: deny
      trustDomain: public
      namespace: prod
      operations:
      - {name: /internal/**, httpVerb: ["*"], action: allow}
      - {name: /admin/*, httpVerb: [GET], action: allow}
    - appId: auditor
      defaultAction: allow
      trustDomain: public
      namespace: prod
      operations:
      - {name: /internal/secret, httpVerb: ["*"], action: deny}
"""
SECRETS = {"vault": {"app-secrets": {"k": "v"}, "db-admin": {"password": "p"}}}


async def test_components_load_only_in_the_app_ids_they_are_scoped_to(make_double: DoubleFactory) -> None:
    """A component scoped elsewhere is not loaded, so the API says exactly what it says for an
    unknown store: 400 ERR_STATE_STORE_NOT_FOUND with the ErrorInfo metadata {appID}."""
    double = await make_double(manifests=Manifests.from_yaml(DEPLOYMENT))
    assert (
        await double.client("worker").post("/v1.0/state/private", json=[{"key": "k", "value": 1}])
    ).status_code == 204
    for store in ("private", "unknown"):
        response = await double.client("api").get(f"/v1.0/state/{store}/k")
        assert response.status_code == 400
        assert response.json() == {
            "errorCode": "ERR_STATE_STORE_NOT_FOUND",
            "message": f"state store {store} is not found",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "DAPR_STATE_NOT_FOUND",
                    "domain": "dapr.io",
                    "metadata": {"appID": "api"},
                }
            ],
        }
    none_loaded = await double.client("outsider").get("/v1.0/state/statestore/k")
    assert none_loaded.status_code == 500
    assert none_loaded.json()["errorCode"] == "ERR_STATE_STORE_NOT_CONFIGURED"


async def test_key_prefix_comes_from_the_component_metadata(make_double: DoubleFactory) -> None:
    """keyPrefix "name": keys are "<store>||<key>", shared by every app id; "private" has no
    keyPrefix, so the default "<app id>||<key>" applies."""
    double = await make_double(manifests=Manifests.from_yaml(DEPLOYMENT))
    await double.client("api").post("/v1.0/state/statestore", json=[{"key": "shared", "value": 1}])
    assert (await double.client("worker").get("/v1.0/state/statestore/shared")).json() == 1
    await double.client("worker").post("/v1.0/state/private", json=[{"key": "mine", "value": 2}])
    keys = [r["key"] for r in await double._pg.pool.fetch(f"SELECT key FROM {double._pg.table('state')} ORDER BY key")]
    assert keys == ["statestore||shared", "worker||mine"]


async def test_secret_scopes_deny_with_daprd_403(make_double: DoubleFactory) -> None:
    double = await make_double(manifests=Manifests.from_yaml(DEPLOYMENT), secrets=SECRETS)
    client = double.client("api")
    assert (await client.get("/v1.0/secrets/vault/app-secrets")).json() == {"k": "v"}
    denied = await client.get("/v1.0/secrets/vault/db-admin")
    assert denied.status_code == 403
    assert denied.json() == {
        "errorCode": "ERR_PERMISSION_DENIED",
        "message": 'access denied by policy to get "db-admin" from "vault"',
    }
    assert (await client.get("/v1.0/secrets/vault/bulk")).json() == {"app-secrets": {"k": "v"}}
    # Kubernetes mode registers the built-in "kubernetes" store (no scope here: allowed, empty).
    missing = await client.get("/v1.0/secrets/kubernetes/x")
    assert missing.status_code == 500 and missing.json()["errorCode"] == "ERR_SECRET_GET"
    unknown = await client.get("/v1.0/secrets/elsewhere/x")
    assert unknown.status_code == 401 and unknown.json()["errorCode"] == "ERR_SECRET_STORE_NOT_FOUND"


async def test_access_control_allows_and_denies_invocations(make_double: DoubleFactory, app: RecordingApp) -> None:
    """The callee's ACL: caller policy by app id + namespace, `/**` and `/*` wildcards, verbs;
    unknown callers get the global defaultAction; the caller sees 403 ERR_DIRECT_INVOKE."""
    double = await make_double(app=app.app, manifests=Manifests.from_yaml(DEPLOYMENT))
    worker, auditor, stranger = double.client("worker"), double.client("auditor"), double.client("stranger")
    assert (await worker.post("/v1.0/invoke/api/method/internal/tasks/lookup")).status_code == 200
    assert (await worker.get("/v1.0/invoke/api/method/admin/stats")).status_code == 200
    assert (await worker.post("/v1.0/invoke/api/method/admin/stats")).status_code == 403  # GET only
    assert (await worker.get("/v1.0/invoke/api/method/admin/stats/deep")).status_code == 403  # /* is one segment
    assert (await auditor.get("/v1.0/invoke/api/method/anything")).status_code == 200  # app default allow
    assert (await auditor.get("/v1.0/invoke/api/method/internal/secret")).status_code == 403
    denied = await stranger.post("/v1.0/invoke/api/method/internal/tasks/lookup")
    assert denied.status_code == 403
    assert denied.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": "failed to invoke, id: api, err: rpc error: code = PermissionDenied desc = access control "
        "policy has denied access to id: spiffe://public/ns/prod/stranger operation: internal/tasks/lookup "
        "verb: POST",
    }
    by_header = await stranger.post("/internal/tasks/lookup", headers={"dapr-app-id": "api"})
    assert by_header.status_code == 403
    assert [r.path for r in app.received if r.path != "/dapr/subscribe"] == [
        "/internal/tasks/lookup",
        "/admin/stats",
        "/anything",
    ]


async def test_the_rendered_chart_is_what_the_sidecars_load() -> None:
    """The chart rendered with helm-python-sdk parses into the typed objects the double applies."""
    manifests = render_chart(("values-minikube.yaml",))
    assert {c.name for c in manifests.components_for("doable-api")} >= {
        "pubsub",
        "live-pubsub",
        "statestore",
        "secretstore",
    }
    assert "reminder-sweep" not in {c.name for c in manifests.components_for("doable-api")}
    assert manifests.component("statestore").metadata["keyPrefix"] == "name"
    assert "connectionString" in manifests.component("statestore").secret_refs
    config = manifests.configuration
    assert config is not None and config.access_control is not None
    assert config.secret_allowed("secretstore", "doable-secrets")
    assert not config.secret_allowed("secretstore", "other")
    assert [r.name for r in manifests.resiliency_for("doable-api")] == ["doable"]
    assert manifests.resiliency_for("someone-else") == ()
