"""The daprd versions the double can impersonate, and what differs between them on Doable's API surface.

Checked against dapr/dapr at each tag (`git show <tag>:<path>`):

* Jobs API: `pkg/api/http/jobs.go` registers `jobs/{name}` under `v1.0-alpha1` only at v1.16.19 and
  v1.17.13; v1.18.3 adds the "Stable v1.0 endpoints" and keeps the alpha ones. A path a version does
  not register falls through to the router's NotFound/MethodNotAllowed handler, which daprd sets to
  the service-invocation fallback (`pkg/api/http/server.go` `handle`, `IsFallback` in
  `pkg/api/http/directmessaging.go`): without a `dapr-app-id` header that answers 404
  ERR_DIRECT_INVOKE "failed getting app id either from the URL path or the header dapr-app-id".
* Bulk publish: v1.18.3 adds `POST /v1.0/publish/bulk/{pubsub}/*` next to the alpha route
  (`pkg/api/http/http.go`, constructPubSubEndpoints).
* Metadata: `runtimeVersion` is `buildinfo.Version()` (the tag without "v"), also in
  `extended.daprRuntimeVersion` (`pkg/api/universal/metadata.go`); v1.18.3 adds `resiliencies`
  (the loaded Resiliency CRs' names) and `mcpServers` (`pkg/api/http/metadata.go`).
* State, secrets, invoke, healthz, and the resiliency engine (`pkg/resiliency`, only Go-syntax
  changes between v1.16.19 and v1.18.3) behave the same at the three tags for what Doable uses.
"""

from __future__ import annotations

from dataclasses import dataclass

SUPPORTED_TAGS = {"1.16": "1.16.19", "1.17": "1.17.13", "1.18": "1.18.3"}
DEFAULT_VERSION = "1.18"


@dataclass(frozen=True)
class DaprVersion:
    """One supported daprd release line, by its minor version ("1.16", "1.17", "1.18")."""

    minor: str

    def __post_init__(self) -> None:
        if self.minor not in SUPPORTED_TAGS:
            raise ValueError(f"dapr_version must be one of {sorted(SUPPORTED_TAGS)}, not {self.minor!r}")

    @property
    def tag(self) -> str:
        """The patch release the double follows, as `/v1.0/metadata` reports it (e.g. "1.17.13")."""
        return SUPPORTED_TAGS[self.minor]

    @property
    def _key(self) -> tuple[int, int]:
        major, minor = self.minor.split(".")
        return int(major), int(minor)

    @property
    def jobs_api_versions(self) -> tuple[str, ...]:
        """URL versions serving `/{v}/jobs/{name}` (pkg/api/http/jobs.go at each tag)."""
        return ("v1.0-alpha1", "v1.0") if self._key >= (1, 18) else ("v1.0-alpha1",)

    @property
    def stable_bulk_publish(self) -> bool:
        """`/v1.0/publish/bulk/...` exists (pkg/api/http/http.go at v1.18.3)."""
        return self._key >= (1, 18)

    @property
    def metadata_lists_resiliencies(self) -> bool:
        """`/v1.0/metadata` has `resiliencies` and `mcpServers` (pkg/api/http/metadata.go at v1.18.3)."""
        return self._key >= (1, 18)
