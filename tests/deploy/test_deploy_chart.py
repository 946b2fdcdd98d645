"""The Helm chart renders, lints and refuses bad values, with the real Helm v4 engine."""

from __future__ import annotations

from typing import Any

import pytest
from deploy_support import CHART, NAMESPACE, VARIANTS, Rendered, deep_merge, helm, render, user_values

EXPECTED_KINDS = {
    "Pod",  # the helm test hook
    "ConfigMap",
    "Service",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "Deployment",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Component",
    "Configuration",
    "Resiliency",
    "StatefulSet",
    "Job",
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_chart_renders_with_the_helm_engine(rendered: dict[str, Rendered], variant: str) -> None:
    result = rendered[variant]
    kinds = {d["kind"] for d in result.docs}
    expected = set(EXPECTED_KINDS)
    if variant == "oke-cloud-kafka":
        expected -= {"StatefulSet", "Job"}  # no in-cluster Redpanda, so no topics Job
        expected |= {"PrometheusRule"}
    assert expected <= kinds, f"missing kinds: {sorted(expected - kinds)}"
    for doc in result.docs:
        assert doc["metadata"].get("namespace") == NAMESPACE or doc["kind"] in {"ClusterRole"}, (
            f"{doc['kind']}/{doc['metadata']['name']} has no explicit namespace"
        )
    assert [d["metadata"]["name"] for d in result.kinds("Deployment")] == [
        "doable-api",
        "doable-reminders",
        "doable-notifications",
        "doable-recurrence",
        "doable-audit",
    ]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_strict_passes(variant: str) -> None:
    files, overrides = VARIANTS[variant]
    report = helm().lint(
        str(CHART), user_values(files, overrides), strict=True, namespace=NAMESPACE, kube_version="v1.33.0"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 1 = INFO (e.g. "icon is recommended")
    assert not report["errors"] and not problems, report


BAD_VALUES = [
    pytest.param(
        {"dapr": {"components": {"pubsub": {"saslMechanism": "SCRAM-SHA-256"}}}},
        "/dapr/components/pubsub/saslMechanism",
        "value must be one of 'SHA-256', 'SHA-512'",
        id="kafka-sasl-mechanism-spelled-the-kafka-way",
    ),
    pytest.param({"securityContext": {"runAsUser": 0}}, "/securityContext/runAsUser", "minimum", id="root-user"),
    pytest.param(
        {"workers": {"websocket": {"enabled": True}}},
        "/workers",
        "additional properties 'websocket' not allowed",
        id="unknown-worker",
    ),
    pytest.param(
        {"api": {"resources": {"limits": {"cpu": "lots"}}}}, "/api/resources/limits/cpu", "", id="cpu-not-a-quantity"
    ),
    pytest.param({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", "value must be one of", id="pull-policy"),
    pytest.param(
        {"dapr": {"components": {"pubsub": {"authType": "password"}}}},
        "/dapr/components/pubsub/saslUsername",
        "minLength",
        id="sasl-without-credentials",
    ),
    pytest.param(
        {"redpanda": {"enabled": False}}, "/dapr/components/pubsub/brokers", "minLength", id="no-kafka-at-all"
    ),
    pytest.param(
        {"api": {"service": {"annotations": {"service.beta.kubernetes.io/oci-load-balancer-shape-flex-max": 10}}}},
        "/api/service/annotations",
        "string",
        id="unquoted-annotation-number",
    ),
]


@pytest.mark.parametrize(("values", "where", "why"), BAD_VALUES)
def test_values_schema_rejects_bad_values_with_a_clear_message(values: dict[str, Any], where: str, why: str) -> None:
    h = helm()
    with pytest.raises(h.HelmValuesError) as raised:
        render(values)
    message = str(raised.value)
    assert "values don't meet the specifications of the schema" in message
    assert f"at '{where}" in message, message
    assert why in message, message


def test_shipped_values_files_satisfy_the_schema() -> None:
    h = helm()
    with h.Chart.load(str(CHART)) as chart:
        for name in ("values-minikube.yaml", "values-oke.yaml"):
            chart.validate_schema(user_values((name,), {}))


def test_notes_tell_how_to_port_forward_and_mint_a_token(rendered: dict[str, Rendered]) -> None:
    notes = rendered["oke"].notes
    assert "kubectl -n doable port-forward svc/doable-api 8000:80" in notes
    assert "exec deploy/doable-api -c api -- doable token --user" in notes
    assert "loadBalancer.ingress" in notes  # the OKE values expose a LoadBalancer


def test_helm_test_hook_is_a_pod_that_checks_readyz_through_the_service(rendered: dict[str, Rendered]) -> None:
    """A Pod, not a Job: Helm 4.2's `helm test --logs` fetches the logs of the pod named after
    each test hook (pkg/action/release_testing.go, GetPodLogs: Pods().GetLogs(hook.Name)), and a
    Job's pod has a generated name, so `--logs` failed although the test passed."""
    for result in rendered.values():
        hooks = [d for d in result.docs if (d["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"]
        assert [(d["kind"], d["metadata"]["name"]) for d in hooks] == [("Pod", "doable-test-readyz")], result.name
        pod = hooks[0]
        annotations = pod["metadata"]["annotations"]
        # Replaced by the next run; deleted after success (Helm reads --logs first); kept when it fails.
        policies = annotations["helm.sh/hook-delete-policy"].split(",")
        assert sorted(policies) == ["before-hook-creation", "hook-succeeded"], policies
        assert annotations["helm.sh/hook-output-log-policy"] == "hook-failed"
        assert pod["spec"]["restartPolicy"] == "Never"
        assert pod["spec"]["activeDeadlineSeconds"] <= 600
        assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "helm-test"  # its NetworkPolicy
        script = pod["spec"]["containers"][0]["args"][0]
        assert "http://doable-api.doable.svc:80/readyz" in script
        compile(script, "readyz", "exec")  # the dedented script is still valid Python


def test_topics_job_creates_every_topic_after_install_and_upgrade(rendered: dict[str, Rendered]) -> None:
    from doable.platform import topology
    job = rendered["oke"].one("Job", "doable-redpanda-topics")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert f"for topic in {' '.join(topology.TOPICS)}; do" in script
    assert "rpk topic create" in script and "--replicas 1" in script


def test_a_failed_topics_job_stays_for_kubectl_logs(rendered: dict[str, Rendered]) -> None:
    """`kubectl logs job/doable-redpanda-topics` must work after a failed install: no
    hook-failed delete policy and no TTL; the next install replaces it; Helm prints its logs."""
    job = rendered["oke"].one("Job", "doable-redpanda-topics")
    annotations = job["metadata"]["annotations"]
    policies = annotations["helm.sh/hook-delete-policy"].split(",")
    assert "hook-failed" not in policies and "before-hook-creation" in policies
    assert "ttlSecondsAfterFinished" not in job["spec"]
    assert annotations["helm.sh/hook-output-log-policy"] == "hook-failed"


def test_api_replicas_follow_the_hpa_when_autoscaling(rendered: dict[str, Rendered]) -> None:
    api = rendered["oke"].one("Deployment", "doable-api")
    assert "replicas" not in api["spec"]  # the HPA owns it
    hpa = rendered["oke"].one("HorizontalPodAutoscaler", "doable-api")
    assert hpa["spec"]["metrics"][0]["containerResource"]["container"] == "api"
    minikube_api = rendered["minikube"].one("Deployment", "doable-api")
    assert minikube_api["spec"]["replicas"] == 1
    assert not rendered["minikube"].kinds("HorizontalPodAutoscaler")


def test_workers_can_be_switched_off_one_by_one() -> None:
    result = render(deep_merge(user_values(("values-oke.yaml",), {}), {"workers": {"audit": {"enabled": False}}}))
    names = [d["metadata"]["name"] for d in result.kinds("Deployment")]
    assert "doable-audit" not in names
    for component in result.kinds("Component"):
        assert "doable-audit" not in component["scopes"]
