"""Every rendered manifest validates against the Kubernetes OpenAPI schemas (strict: unknown fields fail).

kubernetes-validate ships the schemas, so this runs offline. The oldest version checked is the
oldest minor OKE and Minikube still offer; the newest is the latest the package ships. Custom
resources (Dapr's, the PrometheusRule) have no schema there and are checked in their own tests.
"""

from __future__ import annotations

import kubernetes_validate
import pytest
from deploy_support import VARIANTS, Rendered

CUSTOM_GROUPS = ("dapr.io/", "monitoring.coreos.com/")
VERSIONS = ("1.33.0", kubernetes_validate.latest_version())


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_manifests_match_the_kubernetes_schemas(rendered: dict[str, Rendered], variant: str, version: str) -> None:
    checked = 0
    errors = []
    for doc in rendered[variant].docs:
        if doc["apiVersion"].startswith(CUSTOM_GROUPS):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {error.message} at {list(error.path)}")
        checked += 1
    assert not errors, "\n".join(errors)
    assert checked >= 15


def test_only_known_custom_resources_are_rendered(rendered: dict[str, Rendered]) -> None:
    custom = {
        (d["apiVersion"], d["kind"])
        for result in rendered.values()
        for d in result.docs
        if d["apiVersion"].startswith(CUSTOM_GROUPS)
    }
    assert custom == {
        ("dapr.io/v1alpha1", "Component"),
        ("dapr.io/v1alpha1", "Configuration"),
        ("dapr.io/v1alpha1", "Resiliency"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
    }


def test_strict_validation_catches_a_misspelt_field() -> None:
    """Guard: strict mode is really on (an unknown field must fail)."""
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 80}], "selectr": {"a": "b"}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[0], strict=True)
