"""Policy: resources within the per-pod bound and the OKE budget, hardened pods, probes, no inlined secrets."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from deploy_support import (
    CHART,
    OKE_ALLOCATABLE_CPU,
    OKE_MAX_CPU,
    OKE_MAX_MEMORY,
    OKE_OTHER_CPU,
    POD_MAX_CPU,
    POD_MAX_MEMORY,
    REPO,
    VARIANTS,
    Rendered,
    budget,
    cpu,
    memory,
    pod_annotations,
    pod_spec,
    pod_totals,
    render,
    rollout_surge,
    sidecar_resources,
    user_values,
)

from doable.platform import topology


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return spec["containers"] + spec.get("initContainers", [])


# --- per-pod bound --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_container_has_requests_and_limits_and_every_pod_fits_the_bound(
    rendered: dict[str, Rendered], variant: str
) -> None:
    for obj in rendered[variant].workloads():
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        for container in _containers(obj):
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"].get(kind, {})), f"{name}/{container['name']}"
            assert cpu(container["resources"]["requests"]["cpu"]) <= cpu(container["resources"]["limits"]["cpu"])
            assert memory(container["resources"]["requests"]["memory"]) <= memory(
                container["resources"]["limits"]["memory"]
            )
        limit_cpu, limit_memory = pod_totals(obj, "limits")
        assert limit_cpu <= POD_MAX_CPU, f"{name}: pod CPU limit {limit_cpu} (sidecar included) > 1"
        assert limit_memory <= POD_MAX_MEMORY, f"{name}: pod memory limit {limit_memory / 2**20:.0f}Mi > 2Gi"


def test_limitrange_enforces_the_per_pod_bound(rendered: dict[str, Rendered]) -> None:
    limit_range = rendered["oke"].one("LimitRange", "doable-pod-bound")
    pod_rule = next(rule for rule in limit_range["spec"]["limits"] if rule["type"] == "Pod")
    assert cpu(pod_rule["max"]["cpu"]) == POD_MAX_CPU
    assert memory(pod_rule["max"]["memory"]) == POD_MAX_MEMORY


# --- the OKE Always Free budget --------------------------------------------------------------------


def test_oke_requests_fit_the_always_free_budget(rendered: dict[str, Rendered]) -> None:
    """Doable's pods (apps, Dapr sidecars, Redpanda), the API at its HPA maximum: <= 1.2 CPU and <= 6 GiB."""
    rows = budget(rendered["oke"])
    names = {row[0] for row in rows}
    assert names == {
        "doable-api",
        "doable-reminders",
        "doable-notifications",
        "doable-recurrence",
        "doable-audit",
        "doable-redpanda",
    }
    total_cpu = sum((row[2] for row in rows), Decimal(0))
    total_memory = sum(row[3] for row in rows)
    table = "\n".join(f"  {n:<22} x{r}  {c * 1000:>5.0f}m  {m / 2**20:>6.0f}Mi" for n, r, c, m in rows)
    summary = f"{table}\n  {'total':<25} {total_cpu * 1000:>5.0f}m  {total_memory / 2**20:>6.0f}Mi"
    print("\nOKE requests (sidecars included, API at HPA max):\n" + summary)
    assert total_cpu <= OKE_MAX_CPU, summary
    assert total_memory <= OKE_MAX_MEMORY, summary


def _dapr_control_plane_cpu() -> Decimal:
    import yaml

    values = yaml.safe_load((CHART / "dapr-values-oke.yaml").read_text())
    replicas = {"dapr_scheduler": 3}  # fixed at 3 since Dapr 1.15
    return sum(
        (
            cpu(values[c]["resources"]["requests"]["cpu"]) * replicas.get(c, 1)
            for c in ("dapr_operator", "dapr_sidecar_injector", "dapr_sentry", "dapr_scheduler")
        ),
        Decimal(0),
    )


def test_oke_rolling_update_fits_the_nodes_allocatable_cpu(rendered: dict[str, Rendered]) -> None:
    """`helm upgrade` rolls every Deployment at once: Doable's requests at the HPA maximum plus
    every surge pod, plus what else runs on the node, must fit the documented Allocatable."""
    result = rendered["oke"]
    steady = sum((row[2] for row in budget(result)), Decimal(0))
    surge = rollout_surge(result)
    surge_cpu = sum((row[2] for row in surge), Decimal(0))
    others = sum(OKE_OTHER_CPU.values(), Decimal(0)) + _dapr_control_plane_cpu()
    peak = steady + surge_cpu + others
    detail = f"Doable {steady * 1000:.0f}m + surge {surge_cpu * 1000:.0f}m {surge} + others {others * 1000:.0f}m"
    assert steady + surge_cpu <= OKE_MAX_CPU, detail
    assert peak <= OKE_ALLOCATABLE_CPU, f"{peak * 1000:.0f}m > {OKE_ALLOCATABLE_CPU * 1000:.0f}m: {detail}"
    # Only the API surges (it must stay available); the workers stop their old pod first.
    assert {name for name, pods, _ in surge if pods} == {"doable-api"}, surge
    for name in ("doable-reminders", "doable-notifications", "doable-recurrence", "doable-audit"):
        strategy = result.one("Deployment", name)["spec"]["strategy"]["rollingUpdate"]
        assert strategy == {"maxSurge": 0, "maxUnavailable": 1}, name
    # The same figures are the ones the guide tells the operator to compare with.
    guide = (REPO / "docs" / "deploy.md").read_text()
    assert f"{OKE_ALLOCATABLE_CPU * 1000:.0f}m" in guide
    assert f"{peak * 1000:.0f}m" in guide, f"docs/deploy.md should give the rollout peak {peak * 1000:.0f}m"


def test_the_old_surge_on_every_deployment_would_not_fit() -> None:
    """What the budget test guards against: maxSurge 1 on all five Deployments on the same node."""
    files, overrides = VARIANTS["oke"]
    result = render(user_values(files, {**overrides, "workersRollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}))
    steady = sum((row[2] for row in budget(result)), Decimal(0))
    surge_cpu = sum((row[2] for row in rollout_surge(result)), Decimal(0))
    others = sum(OKE_OTHER_CPU.values(), Decimal(0)) + _dapr_control_plane_cpu()
    assert steady + surge_cpu + others > OKE_ALLOCATABLE_CPU


# --- Dapr API tokens -------------------------------------------------------------------------------


def _app_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ({}, {}),
        ({"apiTokenSecret": "doable-dapr-api-token"}, {"DAPR_API_TOKEN": "doable-dapr-api-token"}),
        (
            {"apiTokenSecret": "doable-dapr-api-token", "appTokenSecret": "doable-app-token"},
            {"DAPR_API_TOKEN": "doable-dapr-api-token", "APP_API_TOKEN": "doable-app-token"},
        ),
    ],
)
def test_every_app_container_gets_the_dapr_tokens_the_sidecar_gets(
    tokens: dict[str, str], expected: dict[str, str]
) -> None:
    """The injector gives DAPR_API_TOKEN / APP_API_TOKEN to daprd only
    (pkg/injector/patcher/sidecar_container.go): the app container reads the same Secret itself,
    under the names doable.platform.settings reads (dapr_api_token, app_api_token)."""
    from doable.platform.settings import Settings

    for name in expected:
        assert name.lower() in Settings.model_fields  # the env name the app reads
    files, overrides = VARIANTS["oke"]
    result = render(user_values(files, {**overrides, "dapr": tokens}))
    for deployment in result.kinds("Deployment"):
        annotations = pod_annotations(deployment)
        assert annotations.get("dapr.io/api-token-secret") == tokens.get("apiTokenSecret"), deployment["metadata"][
            "name"
        ]
        assert annotations.get("dapr.io/app-token-secret") == tokens.get("appTokenSecret")
        containers = pod_spec(deployment)["containers"]
        assert len(containers) == 1  # daprd is added by the injector
        env = _app_env(containers[0])
        present = {n: e for n, e in env.items() if n in ("DAPR_API_TOKEN", "APP_API_TOKEN")}
        assert set(present) == set(expected), deployment["metadata"]["name"]
        for name, secret in expected.items():
            assert present[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}
    # Hooks and Redpanda never talk to a sidecar: no token there.
    for obj in result.kinds("Job", "Pod", "StatefulSet"):
        for container in pod_spec(obj)["containers"]:
            assert not {"DAPR_API_TOKEN", "APP_API_TOKEN"} & set(_app_env(container)), obj["metadata"]["name"]


def test_the_shipped_variant_with_tokens_passes_them_to_the_apps(rendered: dict[str, Rendered]) -> None:
    for deployment in rendered["oke-cloud-kafka"].kinds("Deployment"):
        assert "DAPR_API_TOKEN" in _app_env(pod_spec(deployment)["containers"][0])
    for deployment in rendered["minikube"].kinds("Deployment"):
        assert "DAPR_API_TOKEN" not in _app_env(pod_spec(deployment)["containers"][0])


def test_oke_uses_the_free_load_balancer_and_local_path_storage(rendered: dict[str, Rendered]) -> None:
    result = rendered["oke"]
    service = result.one("Service", "doable-api")
    assert service["spec"]["type"] == "LoadBalancer"
    annotations = service["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/oci-load-balancer-shape"] == "flexible"
    assert annotations["service.beta.kubernetes.io/oci-load-balancer-shape-flex-min"] == "10"
    assert annotations["service.beta.kubernetes.io/oci-load-balancer-shape-flex-max"] == "10"
    assert [s for s in result.kinds("Service") if s["spec"].get("type") == "LoadBalancer"] == [service]
    redpanda = result.one("StatefulSet", "doable-redpanda")
    claim = redpanda["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["storageClassName"] == "local-path"


# --- hardening --------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pods_run_non_root_read_only_without_capabilities(rendered: dict[str, Rendered], variant: str) -> None:
    for obj in rendered[variant].workloads():
        spec = pod_spec(obj)
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["securityContext"]["runAsUser"] > 0, name
        for container in _containers(obj):
            sc = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc.get("privileged", False) is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in sc["capabilities"], where
        if obj["kind"] == "Deployment":
            assert spec["securityContext"]["runAsUser"] == 10001, name
            assert sidecar_resources(obj) is not None and pod_annotations(obj)[
                "dapr.io/sidecar-seccomp-profile-type"
            ] == ("RuntimeDefault")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_long_running_containers_have_startup_liveness_and_readiness_probes(
    rendered: dict[str, Rendered], variant: str
) -> None:
    for obj in rendered[variant].kinds("Deployment", "StatefulSet"):
        for container in pod_spec(obj)["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in container, f"{obj['metadata']['name']}/{container['name']} lacks {probe}"
        if obj["kind"] == "Deployment":
            container = pod_spec(obj)["containers"][0]
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_only_the_sidecar_gets_a_kubernetes_api_token(rendered: dict[str, Rendered]) -> None:
    """Pods disable automounting; the token volume is mounted into daprd only (dapr.io/volume-mounts)."""
    for obj in rendered["oke"].kinds("Deployment"):
        spec = pod_spec(obj)
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "serviceAccountToken" in volumes["daprd-kube-api-access"]["projected"]["sources"][0]
        assert pod_annotations(obj)["dapr.io/volume-mounts"] == (
            "daprd-kube-api-access:/var/run/secrets/kubernetes.io/serviceaccount"
        )
        for container in spec["containers"]:
            assert "daprd-kube-api-access" not in {m["name"] for m in container["volumeMounts"]}
    role = rendered["oke"].one("Role", "doable-secret-reader")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["doable-secrets"], "verbs": ["get"]}
    ]


def test_writable_paths_are_only_tmp_and_data(rendered: dict[str, Rendered]) -> None:
    for obj in rendered["oke"].kinds("Deployment"):
        mounts = {m["mountPath"] for m in pod_spec(obj)["containers"][0]["volumeMounts"]}
        assert mounts == {"/tmp", "/data"}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_secrets_are_referenced_never_inlined(rendered: dict[str, Rendered], variant: str) -> None:
    result = rendered[variant]
    assert not result.kinds("Secret"), "the chart must not create Secrets"
    for config_map in result.kinds("ConfigMap"):
        for key in config_map["data"]:
            assert not any(word in key.upper() for word in ("SECRET", "PASSWORD", "API_KEY", "TOKEN")), key
    for obj in result.workloads():
        for container in _containers(obj):
            for env in container.get("env", []):
                if any(word in env["name"].upper() for word in ("SECRET", "PASSWORD", "API_KEY", "TOKEN")):
                    assert "valueFrom" in env, f"{env['name']} is inlined"


def test_one_image_for_every_role_and_no_bitnami(rendered: dict[str, Rendered]) -> None:
    for result in rendered.values():
        images = {c["image"] for obj in result.workloads() for c in _containers(obj)}
        assert not any("bitnami" in image for image in images)
        app_images = {pod_spec(d)["containers"][0]["image"] for d in result.kinds("Deployment")}
        assert len(app_images) == 1
        assert all(not image.endswith(":latest") for image in images)


def test_redpanda_is_a_small_single_node_broker(rendered: dict[str, Rendered]) -> None:
    redpanda = rendered["oke"].one("StatefulSet", "doable-redpanda")
    assert redpanda["spec"]["replicas"] == 1
    container = pod_spec(redpanda)["containers"][0]
    assert container["image"].startswith("docker.redpanda.com/redpandadata/redpanda:v")
    args = container["args"]
    assert "--smp=1" in args and "--overprovisioned" in args
    assert any(a.startswith("--kafka-addr=internal://0.0.0.0:9092") for a in args)
    assert memory(container["resources"]["requests"]["memory"]) <= 1536 * 2**20
    names = {c["name"] for c in _containers(redpanda)}
    assert names == {"redpanda", "config"}, "no tuning or console containers"
    bootstrap = rendered["oke"].one("ConfigMap", "doable-redpanda")["data"][".bootstrap.yaml"]
    assert "auto_create_topics_enabled: false" in bootstrap and "default_topic_replications: 1" in bootstrap


def test_pods_carry_prometheus_scrape_annotations(rendered: dict[str, Rendered]) -> None:
    for obj in rendered["oke"].kinds("Deployment"):
        annotations = pod_annotations(obj)
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(topology.APP_PORT)
        assert annotations["prometheus.io/path"] == "/metrics"
        assert annotations["dapr.io/enable-metrics"] == "true"


def test_prometheus_rule_alerts_on_the_four_conditions(rendered: dict[str, Rendered]) -> None:
    rule = rendered["oke-cloud-kafka"].one("PrometheusRule", "doable")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"]: r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]}
    assert set(alerts) == {"DoableApiDown", "DoableOutboxGrowing", "DoableRemindersLate", "DoableDeadLetterReceiving"}
    assert 'up{namespace="doable", pod=~"doable-api-.*"}' in alerts["DoableApiDown"]
    assert "doable_outbox_depth" in alerts["DoableOutboxGrowing"]
    assert "doable_reminder_lateness_seconds_bucket" in alerts["DoableRemindersLate"]
    # The series the audit worker's dead-letter consumer (Dapr) and the bus (embedded) emit.
    assert alerts["DoableDeadLetterReceiving"] == (
        'sum(increase(doable_events_dead_lettered_total{namespace="doable"}[10m])) > 0'
    )
    assert not rendered["oke"].kinds("PrometheusRule"), "off by default: it needs the Prometheus Operator CRDs"


def test_network_policies_cover_every_pod(rendered: dict[str, Rendered]) -> None:
    result = rendered["oke"]
    policies = result.kinds("NetworkPolicy")
    for obj in result.workloads():
        meta = obj["metadata"] if obj["kind"] == "Pod" else obj["spec"]["template"]["metadata"]
        labels = meta["labels"]
        covered = False
        for policy in policies:
            selector = policy["spec"]["podSelector"]
            if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
                continue
            if all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", [])):
                covered = True
        assert covered, f"{obj['kind']}/{obj['metadata']['name']} has no NetworkPolicy"


def test_egress_allows_the_api_server_and_an_in_cluster_postgres_when_named(rendered: dict[str, Rendered]) -> None:
    """Cilium matches neither the Kubernetes API server nor pods with an ipBlock: daprd's secret
    store and an in-cluster PostgreSQL need rules of their own (values-minikube names its PostgreSQL)."""
    minikube = rendered["minikube"].one("NetworkPolicy", "doable-api")["spec"]["egress"]
    postgres = [r for r in minikube if r.get("to") == [{"podSelector": {"matchLabels": {"app": "postgres"}}}]]
    assert postgres and postgres[0]["ports"] == [{"port": 5432, "protocol": "TCP"}]
    files, overrides = VARIANTS["oke"]
    result = render(
        user_values(files, {**overrides, "networkPolicy": {"egress": {"kubeApiServerCidrs": ["10.0.0.2/32"]}}})
    )
    for group in ("doable-api", "doable-workers"):
        egress = result.one("NetworkPolicy", group)["spec"]["egress"]
        api_server = [r for r in egress if r.get("to") == [{"ipBlock": {"cidr": "10.0.0.2/32"}}]]
        assert api_server and {p["port"] for p in api_server[0]["ports"]} == {443, 6443}, group
    # Nothing extra unless asked for.
    plain = rendered["oke"].one("NetworkPolicy", "doable-api")["spec"]["egress"]
    assert not any("10.0.0.2/32" in str(r) or "postgres" in str(r) for r in plain)
