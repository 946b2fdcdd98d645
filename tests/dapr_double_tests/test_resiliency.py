"""The resiliency engine, on its own and applied to the state and invocation APIs.

Each test cites the dapr/dapr source it follows (tags v1.16.19, v1.17.13, v1.18.3; the
resiliency package only changed Go syntax between them). Breaker periods and retry waits run on
a `VirtualTimer`, so nothing here waits for real time.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.dapr_double import DaprDouble
from tests.dapr_double.manifests import Manifests
from tests.dapr_double.resiliency import (
    BreakerOpen,
    CircuitBreaker,
    CodeError,
    DeadlineExceeded,
    Resiliency,
    Retry,
    VirtualTimer,
    compile_trip,
)

from .conftest import DoubleFactory
from .recording_app import RecordingApp, Reply

STATE = "/v1.0/state/statestore"

# A deployment whose state store HAS a retry and a circuit breaker: what issue 14 describes.
STATE_WITH_RETRY_AND_BREAKER = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore, namespace: doable}
spec:
  type: state.postgresql
  version: v1
  metadata:
  - {name: keyPrefix, value: name}
scopes: [api, worker]
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: conflicts, namespace: doable}
scopes: [api, worker]
spec:
  policies:
    retries:
      stateRetry: {policy: constant, duration: 500ms, maxRetries: 3}
    circuitBreakers:
      stateCB: {maxRequests: 1, interval: 30s, timeout: 60s, trip: consecutiveFailures >= 5}
  targets:
    components:
      statestore:
        outbound: {retry: stateRetry, circuitBreaker: stateCB}
"""

STATE_WITH_TIMEOUT = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore}
spec: {type: state.postgresql, version: v1, metadata: []}
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: slow}
spec:
  policies:
    timeouts: {state: 100ms}
  targets:
    components:
      statestore: {outbound: {timeout: state}}
"""

INVOKE_WITH_MATCHING = """
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: invoke}
spec:
  policies:
    retries:
      invoke: {policy: constant, duration: 1s, maxRetries: 2, matching: {httpStatusCodes: "500-599"}}
  targets:
    apps:
      api: {retry: invoke}
"""


def _transaction(key: str, value: int, etag: str) -> dict[str, object]:
    return {"operations": [{"operation": "upsert", "request": {"key": key, "value": value, "etag": etag}}]}


async def test_a_lost_optimistic_race_is_retried_and_trips_the_breaker(make_double: DoubleFactory) -> None:
    """A transaction with a stale ETag is an ordinary error under the outbound policy
    (pkg/api/http/http.go onPostStateTransaction runs Multi inside the policy runner; no
    Permanent wrapping): the retry repeats it (1 + maxRetries attempts, 500 ms apart), every
    attempt counts as a gobreaker failure, and at consecutiveFailures >= 5 the breaker opens
    (pkg/resiliency/policy.go, breaker/circuitbreaker.go). While open, every state call of that
    sidecar fails fast with "circuit breaker is open", the other sidecar is unaffected (one
    breaker per component per daprd), and after `timeout` a half-open probe closes it again."""
    timer = VirtualTimer()
    double = await make_double(manifests=Manifests.from_yaml(STATE_WITH_RETRY_AND_BREAKER), resiliency_timer=timer)
    api, worker = double.client("api"), double.client("worker")
    assert (await api.post(STATE, json=[{"key": "k", "value": 1}])).status_code == 204
    stale = (await api.get(f"{STATE}/k")).headers["etag"]
    assert (await worker.post(STATE, json=[{"key": "k", "value": 2}])).status_code == 204

    lost = await api.post(f"{STATE}/transaction", json=_transaction("k", 3, stale))
    assert lost.status_code == 500
    assert lost.json()["errorCode"] == "ERR_STATE_TRANSACTION"
    assert "possible etag mismatch" in lost.json()["message"]
    assert timer.slept == [0.5, 0.5, 0.5]  # three retries, constant 500 ms
    breaker = double.resiliency.sidecar("api")._component_cbs["statestore"]
    assert breaker.counts.consecutive_failures == 4
    assert breaker.state == "closed"

    again = await api.post(f"{STATE}/transaction", json=_transaction("k", 3, stale))
    assert again.status_code == 500
    assert breaker.state == "open"  # the fifth consecutive failure tripped it
    # One more wait, then the next attempt meets the open breaker: a permanent error, no more retries.
    assert timer.slept == [0.5] * 4

    read = await api.get(f"{STATE}/k")
    assert read.status_code == 500
    assert read.json() == {
        "errorCode": "ERR_STATE_GET",
        "message": "fail to get k from state store statestore: circuit breaker is open",
    }
    assert (await worker.get(f"{STATE}/k")).json() == 2  # the worker's sidecar has its own breaker

    timer.advance(61)  # past the open period: half-open lets maxRequests=1 probe through
    assert (await api.get(f"{STATE}/k")).json() == 2
    assert breaker.state == "closed"


async def test_a_save_with_a_stale_etag_is_not_retried_but_counts_for_the_breaker(make_double: DoubleFactory) -> None:
    """POST /state wraps ETag errors in backoff.Permanent (pkg/components/state/bulk.go
    PerformBulkStoreOperation): 409 at once, no retry, but the breaker still saw a failure."""
    timer = VirtualTimer()
    double = await make_double(manifests=Manifests.from_yaml(STATE_WITH_RETRY_AND_BREAKER), resiliency_timer=timer)
    api = double.client("api")
    await api.post(STATE, json=[{"key": "k", "value": 1}])
    etag = (await api.get(f"{STATE}/k")).headers["etag"]
    await api.post(STATE, json=[{"key": "k", "value": 2}])
    stale = await api.post(STATE, json=[{"key": "k", "value": 3, "etag": etag}])
    assert stale.status_code == 409
    assert timer.slept == []
    assert double.resiliency.sidecar("api")._component_cbs["statestore"].counts.consecutive_failures == 1


async def test_a_transaction_reported_as_timed_out_still_commits(make_double: DoubleFactory) -> None:
    """policy.go: the timeout only stops waiting; onPostStateTransaction passes r.Context() to
    Multi, so the transaction runs on and commits after the caller got 500 "context deadline
    exceeded". A read (store.Get gets the policy's ctx) is cancelled instead."""
    double = await make_double(manifests=Manifests.from_yaml(STATE_WITH_TIMEOUT))
    api = double.client()
    double.set_state_latency(0.3)
    late = await api.post(
        f"{STATE}/transaction", json={"operations": [{"operation": "upsert", "request": {"key": "k", "value": 7}}]}
    )
    assert late.status_code == 500
    assert late.json()["message"] == "error while executing state transaction: context deadline exceeded"
    timed_out_read = await api.get(f"{STATE}/k")
    assert timed_out_read.status_code == 500
    assert timed_out_read.json()["message"].endswith("context deadline exceeded")
    await double.resiliency.drain()  # the transaction goroutine finishes
    double.set_state_latency(0)
    committed = await api.get(f"{STATE}/k")
    assert committed.status_code == 200 and committed.json() == 7


async def test_invocation_retries_only_the_statuses_matching_allows(
    make_double: DoubleFactory, app: RecordingApp
) -> None:
    """directmessaging.go: an app answer outside 200-399 is a resiliency.CodeError; retry.go
    statusCodeNeedRetry retries it only when `matching.httpStatusCodes` lists the status. The
    caller then gets the app's own last answer."""
    timer = VirtualTimer()
    double = await make_double(app=app.app, manifests=Manifests.from_yaml(INVOKE_WITH_MATCHING), resiliency_timer=timer)
    caller = double.client("caller")
    app.script("/flaky", Reply(503, {"n": 1}), Reply(502, {"n": 2}), Reply(200, {"n": 3}))
    ok = await caller.post("/v1.0/invoke/api/method/flaky", json={})
    assert ok.status_code == 200 and ok.json() == {"n": 3}
    assert len(app.at("/flaky")) == 3 and timer.slept == [1.0, 1.0]

    app.script("/missing", Reply(404, {"error": "nope"}))
    not_found = await caller.post("/v1.0/invoke/api/method/missing", json={})
    assert not_found.status_code == 404 and not_found.json() == {"error": "nope"}
    assert len(app.at("/missing")) == 1  # 404 is outside 500-599: not retried

    app.script("/down", *[Reply(500, {"n": n}) for n in range(5)])
    down = await caller.post("/v1.0/invoke/api/method/down", json={})
    assert down.status_code == 500 and down.json() == {"n": 2}  # 1 + maxRetries attempts
    assert len(app.at("/down")) == 3


async def test_invocation_without_matching_retries_every_failure(make_double: DoubleFactory, app: RecordingApp) -> None:
    """retry.go mustRetryStatusCode: no `matching` = every CodeError is retried."""
    text = INVOKE_WITH_MATCHING.replace(', matching: {httpStatusCodes: "500-599"}', "")
    double = await make_double(app=app.app, manifests=Manifests.from_yaml(text), resiliency_timer=VirtualTimer())
    app.script("/gone", Reply(404), Reply(404), Reply(204))
    response = await double.client("caller").post("/v1.0/invoke/api/method/gone")
    assert response.status_code == 204
    assert len(app.at("/gone")) == 3


async def test_no_policy_means_a_single_attempt(double: DaprDouble, app: RecordingApp) -> None:
    """Without Resiliency CRs, EndpointPolicy has no retry (DaprBuiltInServiceRetries only
    covers transport errors between sidecars, pkg/messaging/direct_messaging.go)."""
    app.script("/once", Reply(503))
    response = await double.client("caller").post("/v1.0/invoke/api/method/once")
    assert response.status_code == 503
    assert len(app.at("/once")) == 1


# -- the engine on its own --------------------------------------------------------------------


def test_exponential_backoff_follows_dapr_kit_defaults() -> None:
    """dapr/kit retry.DefaultConfig + cenkalti/backoff: 500 ms x1.5, +-50 %, capped by maxInterval."""
    retry = Retry.decode({"policy": "exponential", "maxInterval": "2s", "maxRetries": 5})
    retry.randomization_factor = 0.0
    assert [retry.backoff(n) for n in range(1, 7)] == [0.5, 0.75, 1.125, 1.6875, 2.0, None]
    randomized = Retry.decode({"policy": "exponential"})
    assert 0.25 <= (randomized.backoff(1) or 0) <= 0.75
    assert Retry.decode({"policy": "constant", "duration": "1s", "maxRetries": -1}).backoff(10_000) == 1.0


def test_matching_patterns_parse_and_validate_like_retry_go() -> None:
    retry = Retry.decode({"matching": {"httpStatusCodes": "429,500-503", "gRPCStatusCodes": "14"}})
    assert [retry.retries_code(c) for c in (429, 500, 503, 504, 14, 2)] == [True, True, True, False, True, False]
    with pytest.raises(ValueError, match="start value should not bigger than end value"):
        Retry.decode({"matching": {"httpStatusCodes": "599-500"}})


def test_trip_expressions_are_evaluated_over_the_counts() -> None:
    """circuitbreaker.go: a CEL expression over the gobreaker counts; an error never trips."""
    trip = compile_trip("consecutiveFailures >= 3 || (requests > 10 && totalFailures * 2 > requests)")
    assert trip({"consecutiveFailures": 3, "requests": 3, "totalFailures": 3})
    assert trip({"consecutiveFailures": 1, "requests": 12, "totalFailures": 7})
    assert not trip({"consecutiveFailures": 1, "requests": 12, "totalFailures": 5})
    assert not compile_trip("unknownName > 1")({"requests": 1})


async def test_breaker_interval_clears_counts_and_half_open_failure_reopens() -> None:
    """gobreaker v0.5.0: `interval` starts a new generation while closed; a failure while
    half-open opens again; default trip is consecutiveFailures > 5."""
    timer = VirtualTimer()
    breaker = CircuitBreaker("cb", interval=10, timeout=5, timer=timer)

    async def fail() -> None:
        raise RuntimeError("boom")

    for _ in range(5):
        generation = breaker.before()
        breaker.after(generation, False)
    timer.advance(11)
    assert breaker.state == "closed" and breaker.counts.consecutive_failures == 0
    for _ in range(6):
        breaker.after(breaker.before(), False)
    assert breaker.state == "open"
    with pytest.raises(BreakerOpen):
        breaker.before()
    timer.advance(6)
    breaker.after(breaker.before(), False)
    assert breaker.state == "open"


async def test_policy_timeout_cancels_an_operation_that_honours_its_deadline() -> None:
    resiliency = Resiliency.none()
    policy = resiliency.builtin_service_retries("app")
    assert policy.retry is not None and policy.retry.max_retries == 3
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    policy.timeout, policy.retry = 0.05, None
    with pytest.raises(DeadlineExceeded):
        await policy.run(slow)
    assert cancelled.is_set()


async def test_code_errors_are_permanent_when_matching_excludes_them() -> None:
    timer = VirtualTimer()
    retry = Retry.decode(
        {"policy": "constant", "duration": "1s", "maxRetries": 3, "matching": {"httpStatusCodes": "503"}}
    )
    resiliency = Resiliency.none(timer)
    policy = resiliency.builtin_service_retries("app")
    policy.retry = retry
    calls = 0

    async def answer() -> None:
        nonlocal calls
        calls += 1
        raise CodeError(400)

    with pytest.raises(CodeError):
        await policy.run(answer)
    assert calls == 1 and timer.slept == []
