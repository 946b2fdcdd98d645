"""The Dapr client works with every supported daprd: the Jobs API path follows the runtime version.

Wire behaviour modelled here is daprd's, per version (dapr/dapr at v1.16.19, v1.17.13, v1.18.3):
- `pkg/api/http/jobs.go`: 1.16 and 1.17 register `jobs/{name}` under `v1.0-alpha1` only; 1.18 adds
  the same routes under `v1.0` ("Stable v1.0 endpoints") and keeps the alpha ones.
- `pkg/api/http/server.go`: a path no endpoint serves goes to the service-invocation fallback,
  which without a `dapr-app-id` header answers 404 `ERR_DIRECT_INVOKE` "failed getting app id
  either from the URL path or the header dapr-app-id" (`pkg/messages/predefined.go`).
- `pkg/api/universal/metadata.go`: `runtimeVersion` is `buildinfo.Version()`, e.g. "1.17.13"
  (a development build says "edge").
The end-to-end version matrix (the same through the sidecar double) is in tests/dapr_mode.
"""

from __future__ import annotations

import json

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from doable.adapters.dapr.api_paths import JOBS_ALPHA, JOBS_STABLE, jobs_path_for
from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.operations import Upsert
from doable.domain.errors import Unavailable

NO_APP_ID = {
    "errorCode": "ERR_DIRECT_INVOKE",
    "message": "failed getting app id either from the URL path or the header dapr-app-id",
}


class FakeDaprd:
    """Just enough of a daprd of one version: metadata, the jobs routes it serves, the fallback."""

    def __init__(self, version: str, *, reported: str | None = None) -> None:
        self.version = version
        self.reported = version if reported is None else reported
        self.jobs: dict[str, dict[str, object]] = {}
        self.paths: list[str] = []

    def served_prefixes(self) -> tuple[str, ...]:
        minor = int(self.version.split(".")[1])
        return (JOBS_ALPHA, JOBS_STABLE) if minor >= 18 else (JOBS_ALPHA,)

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.paths.append(f"{request.method} {path}")
        if path == "/v1.0/metadata":
            body: dict[str, object] = {"id": "doable-reminders"}
            if self.reported:
                body["runtimeVersion"] = self.reported
            return httpx2.Response(200, json=body)
        for prefix in self.served_prefixes():
            if path.startswith(prefix + "/"):
                name = path[len(prefix) + 1 :]
                if request.method == "POST":
                    self.jobs[name] = json.loads(request.content)
                else:
                    self.jobs.pop(name, None)
                return httpx2.Response(204)
        return httpx2.Response(404, json=NO_APP_ID)

    def client(self) -> DaprClient:
        return DaprClient(transport=httpx2.MockTransport(self.handler), retries=0)


@pytest.mark.parametrize("version", ["1.16.19", "1.17.13", "1.18.3"])
async def test_a_reminder_job_is_scheduled_and_cancelled_on_every_supported_version(version: str) -> None:
    daprd = FakeDaprd(version)
    client = daprd.client()
    try:
        await client.schedule_job("rem-abc-1-r0", due_time="2026-12-03T09:00:00.000000Z", data={"task_id": 1})
        assert daprd.jobs["rem-abc-1-r0"]["dueTime"] == "2026-12-03T09:00:00.000000Z"
        await client.delete_job("rem-abc-1-r0")
        assert daprd.jobs == {}
    finally:
        await client.aclose()
    # The version was asked once; no call went to a path this daprd does not serve.
    assert daprd.paths.count("GET /v1.0/metadata") == 1
    expected = JOBS_STABLE if version.startswith("1.18") else JOBS_ALPHA
    assert all(p.split(" ")[1].startswith(expected) for p in daprd.paths if "jobs" in p)


@pytest.mark.parametrize(("version", "reported"), [("1.17.13", "edge"), ("1.17.13", ""), ("1.16.19", "1.18.0")])
async def test_a_missing_or_wrong_runtime_version_is_corrected_by_daprds_answer(version: str, reported: str) -> None:
    daprd = FakeDaprd(version, reported=reported)
    client = daprd.client()
    try:
        await client.schedule_job("rem-abc-2-r0", due_time="2026-12-03T09:00:00.000000Z", data={})
        await client.schedule_job("rem-abc-3-r0", due_time="2026-12-03T09:00:00.000000Z", data={})
    finally:
        await client.aclose()
    assert set(daprd.jobs) == {"rem-abc-2-r0", "rem-abc-3-r0"}
    # One wasted call on the stable path, then the alpha path for good.
    assert [p for p in daprd.paths if "jobs" in p] == [
        f"POST {JOBS_STABLE}/rem-abc-2-r0",
        f"POST {JOBS_ALPHA}/rem-abc-2-r0",
        f"POST {JOBS_ALPHA}/rem-abc-3-r0",
    ]


@given(
    major=st.integers(0, 3),
    minor=st.integers(0, 40),
    patch=st.integers(0, 40),
    prefix=st.sampled_from(["", "v"]),
    suffix=st.sampled_from(["", "-rc.1", "+build"]),
)
def test_the_jobs_path_follows_the_version_number(major: int, minor: int, patch: int, prefix: str, suffix: str) -> None:
    path = jobs_path_for(f"{prefix}{major}.{minor}.{patch}{suffix}")
    assert path == (JOBS_STABLE if (major, minor) >= (1, 18) else JOBS_ALPHA)


async def test_a_transaction_the_sidecar_timed_out_is_not_repeated() -> None:
    """daprd returns 500 when its resiliency timeout fires, while the transaction goes on and
    may commit (pkg/resiliency/policy.go; onPostStateTransaction keeps r.Context())."""
    calls: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request.url.path)
        return httpx2.Response(
            500,
            json={
                "errorCode": "ERR_STATE_TRANSACTION",
                "message": "error while executing state transaction: context deadline exceeded",
            },
        )

    client = DaprClient(transport=httpx2.MockTransport(handler), retries=3, backoff=0.0)
    try:
        with pytest.raises(Unavailable):
            await client.transact("statestore", [Upsert("k", {"v": 1})])
    finally:
        await client.aclose()
    assert calls == ["/v1.0/state/statestore/transaction"]
