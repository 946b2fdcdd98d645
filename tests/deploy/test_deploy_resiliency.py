"""The Dapr Resiliency policies, the state store's own timeout and the app's client timeouts fit
together, in the chart (every variant) and in dapr-components/ (kubernetes and local).

What daprd does with them (dapr/dapr v1.16-v1.18): a component's outbound policy also wraps state
transactions (pkg/api/http/http.go, onPostStateTransaction), and pkg/resiliency/policy.go retries
any non-permanent error and counts it in the breaker, ETag and first-write conflicts included;
the timeout applies to each attempt and does not stop the operation; a retry policy retries
every non-2xx of a service invocation unless `matching.httpStatusCodes` narrows it
(pkg/resiliency/retry.go, in the Resiliency CRD since 1.16)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from deploy_support import REPO, VARIANTS, Rendered, load_yaml_docs, pod_spec, render, user_values

from doable.platform import topology
from doable.platform.settings import Settings

COMPONENTS_DIR = REPO / "dapr-components"


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"([0-9.]+)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def _resiliencies(rendered: dict[str, Rendered]) -> list[tuple[str, dict[str, Any]]]:
    found = [(f"chart:{name}", result.one("Resiliency", "doable")) for name, result in rendered.items()]
    for sub in ("kubernetes", "local"):
        found += [
            (f"dapr-components/{sub}", d)
            for d in load_yaml_docs(COMPONENTS_DIR / sub / "resiliency.yaml")
            if d["kind"] == "Resiliency"
        ]
    return found


def _statestores(rendered: dict[str, Rendered]) -> list[tuple[str, dict[str, Any]]]:
    found = [
        (f"chart:{name}", d)
        for name, result in rendered.items()
        for d in result.kinds("Component")
        if d["metadata"]["name"] == topology.STATE_STORE
    ]
    for sub in ("kubernetes", "local"):
        found += [(f"dapr-components/{sub}", load_yaml_docs(COMPONENTS_DIR / sub / "statestore.yaml")[0])]
    return found


def worst_case(policies: dict[str, Any], target: dict[str, Any]) -> float:
    """The longest one call under `target` can take in the sidecar: each attempt up to the
    timeout, plus the waits between attempts (constant policies only: their sum is known)."""
    timeout = _seconds(policies["timeouts"][target["timeout"]])
    if "retry" not in target:
        return timeout
    retry = policies["retries"][target["retry"]]
    assert retry["policy"] == "constant", "outbound retries must be constant: their worst case is then known"
    retries = int(retry["maxRetries"])
    assert retries >= 0, "an outbound retry must be bounded"
    return timeout * (retries + 1) + _seconds(retry.get("duration", "5s")) * retries


def _codes(pattern: str) -> set[int]:
    codes: set[int] = set()
    for part in pattern.split(","):
        start, _, end = part.partition("-")
        codes |= set(range(int(start), int(end or start) + 1))
    return codes


def test_the_state_store_gets_a_timeout_and_neither_retry_nor_breaker(rendered: dict[str, Rendered]) -> None:
    for where, doc in _resiliencies(rendered):
        spec = doc["spec"]
        state = spec["targets"]["components"][topology.STATE_STORE]
        assert set(state) == {"outbound"}, where
        assert set(state["outbound"]) == {"timeout"}, f"{where}: {state}"
        assert state["outbound"]["timeout"] in spec["policies"]["timeouts"], where
        # Nor a blanket default: no policy may apply to every component.
        assert not any(name.startswith("Default") for name in spec["policies"].get("retries", {})), where
        assert not any(name.startswith("Default") for name in spec["policies"].get("circuitBreakers", {})), where


def test_the_database_timeout_ends_a_transaction_no_later_than_the_resiliency_timeout(
    rendered: dict[str, Rendered],
) -> None:
    """daprd keeps running a transaction after its resiliency timeout (the handler passes the
    request's context), so the component's own timeout is what ends it: not later than that."""
    resiliency = dict(_resiliencies(rendered))
    for where, component in _statestores(rendered):
        metadata = {m["name"]: m.get("value") for m in component["spec"]["metadata"]}
        policies = resiliency[where]["spec"]["policies"]
        state_timeout = _seconds(policies["timeouts"]["state"])
        assert _seconds(metadata["timeout"]) <= state_timeout, where
        # Comfortably above a normal Neon transaction (tens of ms) and a compute's wake-up (~1 s).
        assert state_timeout >= 3, where


def test_invocation_retries_only_server_errors(rendered: dict[str, Rendered]) -> None:
    for where, doc in _resiliencies(rendered):
        spec = doc["spec"]
        target = spec["targets"]["apps"][topology.API_APP_ID]
        retry = spec["policies"]["retries"][target["retry"]]
        codes = _codes(retry["matching"]["httpStatusCodes"])
        assert codes and codes <= set(range(500, 600)), f"{where}: {sorted(codes)}"
        assert 404 not in codes and 409 not in codes and 403 not in codes, where
        assert 503 in codes, where


def test_publishes_have_a_breaker_and_deliveries_end_in_the_dead_letter_topic(rendered: dict[str, Rendered]) -> None:
    for where, doc in _resiliencies(rendered):
        spec = doc["spec"]
        policies, components = spec["policies"], spec["targets"]["components"]
        for name in (topology.PUBSUB, topology.LIVE_PUBSUB):
            outbound = components[name]["outbound"]
            assert outbound["timeout"] in policies["timeouts"], where
            assert outbound["circuitBreaker"] in policies["circuitBreakers"], where
            assert worst_case(policies, outbound) > 0
        delivery = policies["retries"][components[topology.PUBSUB]["inbound"]["retry"]]
        # Bounded, so a poison message reaches the dead-letter topic instead of holding its partition.
        assert delivery["policy"] == "exponential" and 0 < int(delivery["maxRetries"]) <= 20, where
        assert "inbound" not in components[topology.LIVE_PUBSUB], where


def _client_timeouts(result: Rendered) -> dict[str, float]:
    data = result.one("ConfigMap", "doable")["data"]
    return {
        "state": float(data["DOABLE_DAPR_TIMEOUT"]),
        "publish": float(data["DOABLE_DAPR_PUBLISH_TIMEOUT"]),
        "invoke": float(data["DOABLE_DAPR_INVOKE_TIMEOUT"]),
    }


def _sidecar_worst_cases(doc: dict[str, Any]) -> dict[str, float]:
    spec = doc["spec"]
    policies, components = spec["policies"], spec["targets"]["components"]
    return {
        "state": worst_case(policies, components[topology.STATE_STORE]["outbound"]),
        "publish": max(
            worst_case(policies, components[n]["outbound"]) for n in (topology.PUBSUB, topology.LIVE_PUBSUB)
        ),
        "invoke": worst_case(policies, spec["targets"]["apps"][topology.API_APP_ID]),
    }


def test_the_apps_client_waits_longer_than_the_sidecar_can_take(rendered: dict[str, Rendered]) -> None:
    for name, result in rendered.items():
        client = _client_timeouts(result)
        sidecar = _sidecar_worst_cases(result.one("Resiliency", "doable"))
        for call in ("state", "publish", "invoke"):
            assert client[call] > sidecar[call], f"{name}: {call} client {client[call]}s <= sidecar {sidecar[call]}s"
        # Every Doable container reads them (the ConfigMap is its envFrom).
        for deployment in result.kinds("Deployment"):
            for container in pod_spec(deployment)["containers"]:
                assert {"configMapRef": {"name": "doable"}} in container["envFrom"]


def test_the_apps_default_timeouts_fit_the_dapr_components_policies() -> None:
    """`dapr run` with dapr-components/local (no ConfigMap): the Settings defaults must fit too."""
    defaults = Settings()
    client = {
        "state": defaults.dapr_timeout,
        "publish": defaults.dapr_publish_timeout,
        "invoke": defaults.dapr_invoke_timeout,
    }
    for sub in ("kubernetes", "local"):
        doc = next(d for d in load_yaml_docs(COMPONENTS_DIR / sub / "resiliency.yaml") if d["kind"] == "Resiliency")
        for call, worst in _sidecar_worst_cases(doc).items():
            assert client[call] > worst, f"{sub}: {call} default {client[call]}s <= sidecar {worst}s"


@pytest.mark.parametrize(
    "resiliency",
    [
        {"invokeRetries": 5, "invokeTimeoutSeconds": 20},
        {"publishRetries": 0, "publishTimeoutSeconds": 2, "clientMarginSeconds": 1},
        {"stateTimeoutSeconds": 12},
    ],
)
def test_the_client_timeouts_follow_changed_resiliency_values(resiliency: dict[str, Any]) -> None:
    files, overrides = VARIANTS["oke"]
    result = render(user_values(files, {**overrides, "dapr": {"resiliency": resiliency}}))
    client = _client_timeouts(result)
    sidecar = _sidecar_worst_cases(result.one("Resiliency", "doable"))
    assert all(client[call] > sidecar[call] for call in client), (client, sidecar)
    component = next(d for d in result.kinds("Component") if d["metadata"]["name"] == topology.STATE_STORE)
    metadata = {m["name"]: m.get("value") for m in component["spec"]["metadata"]}
    assert _seconds(metadata["timeout"]) == _seconds(
        result.one("Resiliency", "doable")["spec"]["policies"]["timeouts"]["state"]
    )
