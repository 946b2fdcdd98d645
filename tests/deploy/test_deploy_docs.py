"""Documentation and the Dapr control-plane values stay true to the chart."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import yaml
from deploy_support import CHART, POD_MAX_CPU, POD_MAX_MEMORY, REPO, Rendered, budget, cpu, memory


def _leaf_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Documented keys: nested maps are walked, except resource pairs and sidecar blocks documented whole."""
    keys = []
    whole = {
        "requests",
        "limits",
        "sidecar",
        "podMax",
        "containerDefault",
        "containerDefaultRequest",
        "saslPasswordSecret",
    }
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value and key not in whole:
            keys += _leaf_keys(value, path)
        else:
            keys.append(path)
    return keys


def test_every_value_is_documented_in_the_chart_readme() -> None:
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [key for key in _leaf_keys(values) if f"| `{key}` |" not in readme]
    assert not missing, f"chart/README.md does not document {missing}"


def test_chart_readme_budget_matches_the_rendered_oke_values(rendered: dict[str, Rendered]) -> None:
    rows = budget(rendered["oke"])
    at_max = sum((row[2] for row in rows), Decimal(0))
    readme = (CHART / "README.md").read_text()
    assert f"**{at_max * 1000:.0f}m**" in readme or f"/ {at_max * 1000:.0f}m**" in readme, at_max


def test_dapr_control_plane_values_are_small_and_bounded() -> None:
    values = yaml.safe_load((CHART / "dapr-values-oke.yaml").read_text())
    assert values["global"]["actors"]["enabled"] is False  # no placement service
    assert values["global"]["ha"]["enabled"] is False
    assert values["global"]["scheduler"]["enabled"] is True  # the Jobs API needs it
    assert values["dapr_scheduler"]["cluster"]["storageClassName"] == "local-path"
    for component in ("dapr_operator", "dapr_sidecar_injector", "dapr_sentry", "dapr_scheduler"):
        resources = values[component]["resources"]
        assert cpu(resources["limits"]["cpu"]) <= POD_MAX_CPU, component
        assert memory(resources["limits"]["memory"]) <= POD_MAX_MEMORY, component
        assert cpu(resources["requests"]["cpu"]) <= cpu(resources["limits"]["cpu"]), component


def test_deploy_guide_covers_both_targets_and_the_image_size() -> None:
    guide = (REPO / "docs" / "deploy.md").read_text()
    for needed in (
        "## Minikube",
        "## Oracle OKE Always Free",
        "## Troubleshooting",
        "VM.Standard.A1.Flex",
        "2 OCPU, 12 GB",
        "local-path",
        "OCIR",
        "Neon",
        "Redpanda Cloud",
        "chart/dapr-values-oke.yaml",
        "Out of host capacity",
        "load balancer",
        "Idle reclamation",
        "Expected size",
        "--rollback-on-failure --wait --timeout 10m",
    ):
        assert needed in guide, needed


def test_network_policies_keep_the_api_public_and_the_workers_closed(rendered: dict[str, Rendered]) -> None:
    api = rendered["oke-cloud-kafka"].one("NetworkPolicy", "doable-api")
    workers = rendered["oke-cloud-kafka"].one("NetworkPolicy", "doable-workers")
    public = [rule for rule in api["spec"]["ingress"] if "from" not in rule]
    assert [[p["port"] for p in rule["ports"]] for rule in public] == [[8000]]
    assert all("from" in rule for rule in workers["spec"]["ingress"]), "metricsFrom set: nothing open to all"
