"""The rendered manifests pass checkov's Kubernetes checks (skips only in checkov.yaml, each with its reason)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_support import VARIANTS, tool

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
