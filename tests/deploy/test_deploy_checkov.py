"""The rendered manifests pass checkov's Kubernetes checks (skips in checkov.yaml, each with its reason, and a
few `checkov.io/skipN` annotations on single objects, each with its reason, listed below)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_support import VARIANTS, Rendered, tool

CONFIG = Path(__file__).with_name("checkov.yaml")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_manifests_pass_checkov(rendered_dirs: dict[str, Path], variant: str) -> None:
    completed = subprocess.run(
        [tool("checkov"), "--config-file", str(CONFIG), "-d", str(rendered_dirs[variant]), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    try:
        reports = json.loads(completed.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov gave no JSON report (exit {completed.returncode}):\n{completed.stderr[-2000:]}")
    reports = reports if isinstance(reports, list) else [reports]
    kubernetes = [r for r in reports if r.get("check_type") == "kubernetes"]
    assert kubernetes, f"checkov ran no Kubernetes checks: {completed.stdout[:500]}"
    summary = kubernetes[0]["summary"]
    failed = [f"{c['check_id']} {c['check_name']}: {c['resource']}" for c in kubernetes[0]["results"]["failed_checks"]]
    assert not failed, "\n".join(failed)
    assert summary["passed"] > 300 and summary["parsing_errors"] == 0, summary


def test_every_checkov_skip_has_a_written_reason() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    text = CONFIG.read_text()
    for check in config["skip-check"]:
        block = text.split(f"- {check}")[0].rsplit("skip-check:", 1)[-1]
        reason = block.split("\n  - ")[-1] if "\n  - " in block else block
        assert f'# {check} "' in reason, f"{check} is skipped without a reason right above it"


#: Per-object skips (checkov.io/skipN annotations in the templates): (kind, check) pairs allowed.
OBJECT_SKIPS = {
    ("Pod", "CKV_K8S_8"),  # the one-shot helm test Pod has no liveness probe
    ("Pod", "CKV_K8S_9"),  # nor a readiness probe
    ("Deployment", "CKV_K8S_35"),  # DAPR_API_TOKEN / APP_API_TOKEN are env vars by Dapr's convention
}


def test_object_level_checkov_skips_are_few_and_explained(rendered: dict[str, Rendered]) -> None:
    for result in rendered.values():
        for doc in result.docs:
            for key, value in (doc["metadata"].get("annotations") or {}).items():
                if not key.startswith("checkov.io/skip"):
                    continue
                check, _, reason = value.partition("=")
                assert (doc["kind"], check) in OBJECT_SKIPS, f"{doc['kind']}/{doc['metadata']['name']}: {check}"
                assert len(reason.split()) >= 5, f"{check} skipped without a reason"
