"""What differs between the daprd versions the double impersonates, and the Jobs API's validation.

Sources: dapr/dapr `pkg/api/http/jobs.go` at v1.16.19 / v1.17.13 (alpha1 only) and v1.18.3 (both);
`pkg/api/http/server.go` (NotFound/MethodNotAllowed -> the invocation fallback) and
`pkg/api/http/directmessaging.go` / `pkg/messages/predefined.go` ErrDirectInvokeNoAppID;
`pkg/api/universal/metadata.go` (runtimeVersion = buildinfo.Version()); go-etcd-cron
`internal/api/validator/validator.go` and `internal/scheduler/builder.go` for job validation.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.dapr_double import ManualClock

from .conftest import DoubleFactory
from .recording_app import RecordingApp

NO_APP_ID = {
    "errorCode": "ERR_DIRECT_INVOKE",
    "message": "failed getting app id either from the URL path or the header dapr-app-id",
}


@pytest.mark.parametrize(
    ("version", "tag", "paths"),
    [
        ("1.16", "1.16.19", ["v1.0-alpha1"]),
        ("1.17", "1.17.13", ["v1.0-alpha1"]),
        ("1.18", "1.18.3", ["v1.0-alpha1", "v1.0"]),
    ],
)
async def test_the_jobs_api_is_served_where_the_version_serves_it(
    make_double: DoubleFactory, app: RecordingApp, manual_clock: ManualClock, version: str, tag: str, paths: list[str]
) -> None:
    double = await make_double(app=app.app, clock=manual_clock, dapr_version=version)
    client = double.client()
    metadata = (await client.get("/v1.0/metadata")).json()
    assert metadata["runtimeVersion"] == tag
    assert metadata["extended"]["daprRuntimeVersion"] == tag
    for api_version in ("v1.0-alpha1", "v1.0"):
        url = f"/{api_version}/jobs/job-{api_version}"
        scheduled = await client.post(url, json={"dueTime": "1s", "data": {"v": api_version}})
        fetched = await client.get(url)
        deleted = await client.delete(url)
        if api_version in paths:
            assert (scheduled.status_code, fetched.status_code, deleted.status_code) == (204, 200, 204)
        else:
            # No route: daprd's router hands every method to the invocation fallback.
            for response in (scheduled, fetched, deleted):
                assert response.status_code == 404
                assert response.json() == NO_APP_ID
    assert [r.path for r in app.received if r.path.startswith("/job")] == []


async def test_an_unserved_jobs_path_with_a_dapr_app_id_header_is_an_invocation(
    make_double: DoubleFactory, app: RecordingApp
) -> None:
    """On 1.17 `/v1.0/jobs/x` is not a route, so `dapr-app-id` turns it into a service call."""
    double = await make_double(app=app.app, dapr_version="1.17")
    response = await double.client().post("/v1.0/jobs/x", json={}, headers={"dapr-app-id": "api"})
    assert response.status_code == 200
    assert [r.path for r in app.at("/v1.0/jobs/x")] == ["/v1.0/jobs/x"]


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("reminder-task_7:user 1", True),  # "_", ":", "-", " " are removed before validation
        ("Reminder.Task.7", True),  # lower-cased before validation
        ("reminder!7", False),
        ("reminder..7", False),
        ("reminder.", False),
        ("émoji", False),
    ],
)
async def test_job_names_are_validated_like_go_etcd_cron(make_double: DoubleFactory, name: str, valid: bool) -> None:
    double = await make_double(namespace="prod")
    response = await double.client().post(f"/v1.0-alpha1/jobs/{name}", json={"dueTime": "10s"})
    if valid:
        assert response.status_code == 204, response.text
        return
    assert response.status_code == 500
    body = response.json()
    assert body["errorCode"] == "DAPR_SCHEDULER_SCHEDULE_JOB"
    sanitized = "app||prod||api||" + "".join(ch for ch in name if ch not in "_:- ")
    assert body["message"].startswith(
        f'failed to schedule job due to: rpc error: code = Unknown desc = job name is invalid "{sanitized}": '
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"
    )
    assert body["details"][0]["metadata"] == {"appID": "api", "namespace": "prod"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"dueTime": "10s", "repeats": 3}, "job must have a schedule to repeat"),
        ({"schedule": "@every 1m", "repeats": 0}, "defined repeats must be greater than 0"),
        ({"dueTime": "10s", "ttl": "1h"}, "job must have a schedule to have a ttl"),
        ({"schedule": "@every 1m", "ttl": "soon"}, "ttl format not recognized"),
        ({"schedule": "@every 1m", "dueTime": "2026-01-02T00:00:00Z", "ttl": "2026-01-01T00:00:00Z"},
         "ttl must be greater than due time"),
    ],
)  # fmt: skip
async def test_ttl_and_repeats_rules(make_double: DoubleFactory, body: dict[str, object], error: str) -> None:
    double = await make_double()
    response = await double.client().post("/v1.0/jobs/rules", json=body)
    assert response.status_code == 500
    assert response.json()["message"] == (
        f"failed to schedule job due to: rpc error: code = Unknown desc = job failed validation: {error}"
    )


async def test_one_repeat_without_a_schedule_is_allowed(
    make_double: DoubleFactory, app: RecordingApp, manual_clock: ManualClock
) -> None:
    """builder.go only refuses repeats > 1 without a schedule."""
    double = await make_double(app=app.app, clock=manual_clock)
    assert (await double.client().post("/v1.0/jobs/once", json={"dueTime": "1s", "repeats": 1})).status_code == 204
    manual_clock.advance(timedelta(seconds=2))
    assert await double.tick() == 1


async def test_metadata_lists_loaded_resiliencies_on_1_18_only(make_double: DoubleFactory) -> None:
    from tests.dapr_double.manifests import Manifests

    text = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: r1}\nspec: {policies: {}, targets: {}}\n"
    for version, expected in (("1.18", [{"name": "r1"}]), ("1.17", None)):
        double = await make_double(manifests=Manifests.from_yaml(text), dapr_version=version)
        assert (await double.client().get("/v1.0/metadata")).json().get("resiliencies") == expected


def test_an_unsupported_version_is_refused() -> None:
    from tests.dapr_double.versions import DaprVersion

    with pytest.raises(ValueError, match="dapr_version must be one of"):
        DaprVersion("1.15")
