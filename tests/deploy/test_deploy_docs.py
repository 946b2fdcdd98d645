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


# --- the guide covers the deployment issues it documents -------------------------------------------

GUIDE = REPO / "docs" / "deploy.md"


def _guide() -> str:
    return GUIDE.read_text()


def test_dapr_is_pinned_and_the_supported_versions_are_stated_everywhere() -> None:
    chart_yaml = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart_yaml["annotations"]["doable.dev/requires-dapr"] == ">=1.16.0 <1.19.0"
    assert chart_yaml["annotations"]["doable.dev/tested-dapr"] == "1.18.3"
    texts = {
        "docs/deploy.md": _guide(),
        "chart/README.md": (CHART / "README.md").read_text(),
        "dapr-components/README.md": (REPO / "dapr-components" / "README.md").read_text(),
    }
    for where, text in texts.items():
        assert "1.16" in text and "1.17" in text and "1.18" in text, where
        assert "1.15" not in text, where
        # Every `dapr init -k` names a runtime version; the Helm install names the chart version.
        for line in text.splitlines():
            if "dapr init -k" in line and "bare" not in line and "never" not in line.lower():
                assert "--runtime-version 1.18.3" in line, f"{where}: {line.strip()}"
    assert _guide().count("helm upgrade --install dapr dapr/dapr --version 1.18.3") >= 2
    for workflow in ("deploy-minikube.yml",):
        text = (REPO / ".github" / "workflows" / workflow).read_text()
        assert 'DAPR_VERSION: "1.18.3"' in text and '--version "${DAPR_VERSION}"' in text


def test_the_guide_explains_each_documented_failure() -> None:
    guide = _guide()
    troubleshooting = guide[guide.index("## Troubleshooting") :]
    for needed in (
        "doable token",  # tokens refused
        "helm test --logs",
        "kubectl -n doable logs job/doable-redpanda-topics",
        "oci-growfs",
        "Insufficient cpu",
        "Neon",
        "OCIR",
        "OPENAI_API_KEY",
        "configure-kubectl-oke@v1",
        "Cilium",
        "attestation",
    ):
        assert needed in troubleshooting, needed


def test_the_guide_gives_the_growfs_cloud_init_and_group_based_iam() -> None:
    guide = _guide()
    assert "sudo /usr/libexec/oci-growfs -y" in guide
    assert "oke_init_script" in guide  # the node pool's own bootstrap is kept
    statements = [line.strip() for line in guide.splitlines() if line.strip().startswith("Allow ")]
    assert statements and all(s.startswith("Allow group ") for s in statements), statements
    assert "clusterrolebinding" in guide


def test_the_guide_does_the_neon_arithmetic_with_the_oke_values() -> None:
    guide = _guide()
    oke = yaml.safe_load((CHART / "values-oke.yaml").read_text())
    idle_max = oke["config"]["outboxIdleMaxSeconds"]
    sweep = oke["dapr"]["components"]["reminderSweep"]["schedule"]
    cleanup = oke["dapr"]["components"]["stateStore"]["cleanupInterval"]
    assert idle_max == 1800 and sweep == "@every 30m" and cleanup == "24h"
    for setting in (
        "config.outboxIdleMaxSeconds: 1800",
        'reminderSweep.schedule: "@every 30m"',
        "cleanupInterval: 24h",
    ):
        assert setting in guide, setting
    # The figures: 100 CU-hours, 5-minute autosuspend, 0.25 CU x 730 h = 182.5 when never idle,
    # and the idle estimate under 100.
    wakeups = 3600 / idle_max + 3600 / 1800 + 5 / 24
    idle_cu_hours = 0.25 * 730 * (wakeups * 5 / 60)
    assert idle_cu_hours < 100
    for figure in ("100 CU-hours", "5 minutes", "182.5", f"{wakeups:.1f} wake-ups", f"{idle_cu_hours:.0f} CU-hours"):
        assert figure in guide, figure


def test_the_guide_documents_debugging_through_port_forward_and_the_app_token() -> None:
    guide = _guide()
    section = guide[guide.index("## Debugging through port-forward") : guide.index("## NetworkPolicies")]
    assert "port-forward deploy/doable-api 3500:3500" in section
    assert "127.0.0.1" in section and "dapr.appTokenSecret" in section and "dapr-api-token" in section


def test_notes_say_where_the_token_key_comes_from(rendered: dict[str, Rendered]) -> None:
    notes = rendered["oke"].notes
    assert "exec deploy/doable-api -c api -- doable token --user alice" in notes
    assert "secret store" in notes and "dapr.appTokenSecret" in notes
