"""GitHub workflows: valid against the workflow schema, and every job, secret and repo file they name exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import REPO, tool

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
DEPLOY_DOC = REPO / "docs" / "deploy.md"

#: Repository secrets the workflows may use; each is explained in docs/deploy.md.
DOCUMENTED_SECRETS = {
    "GITHUB_TOKEN",  # provided by GitHub
    "OPENAI_API_KEY",
    "OCIR_REGISTRY",
    "OCIR_NAMESPACE",
    "OCIR_USERNAME",
    "OCIR_AUTH_TOKEN",
    "OCI_CLI_USER",
    "OCI_CLI_TENANCY",
    "OCI_CLI_FINGERPRINT",
    "OCI_CLI_KEY_CONTENT",
    "OCI_CLI_REGION",
    "OKE_CLUSTER_OCID",
}

#: Paths of the deployment area a `run:` script or an input may name.
PATH_PATTERN = re.compile(r"(?<![\w./-])((?:chart|scripts|dapr-components|docs|tests)/[\w./-]+|Dockerfile)")
#: Files of the Python project the workflows rely on (pip -c constraints.txt, -e ".[test]", make test).
PROJECT_PATTERN = re.compile(r"(?<![\w./-])(constraints\.txt|pyproject\.toml)")


def _load(path: Path) -> dict[str, Any]:
    # PyYAML reads the key `on` as True; put it back.
    data = yaml.safe_load(path.read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_the_four_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "release.yml", "deploy-minikube.yml", "deploy-oke.yml"}


def test_workflows_validate_against_the_github_workflow_schema() -> None:
    completed = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_needs_name_existing_jobs(path: Path) -> None:
    jobs = _load(path)["jobs"]
    for name, job in jobs.items():
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            assert need in jobs, f"{path.name}: job {name} needs unknown job {need}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_secrets_are_known_and_documented(path: Path) -> None:
    used = set(re.findall(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)", path.read_text()))
    unknown = used - DOCUMENTED_SECRETS
    assert not unknown, f"{path.name} uses undocumented secrets {sorted(unknown)}"
    doc = DEPLOY_DOC.read_text()
    for secret in used - {"GITHUB_TOKEN"}:
        assert f"`{secret}`" in doc, f"docs/deploy.md does not explain secret {secret}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_repository_files_named_by_the_workflows_exist(path: Path) -> None:
    missing = []
    for step in _steps(_load(path)):
        texts = [step.get("run", "")] + [str(v) for v in (step.get("with") or {}).values()]
        for text in texts:
            for match in PATH_PATTERN.findall(text):
                if not (REPO / match.rstrip(".")).exists():
                    missing.append(match)
    assert not missing, f"{path.name} names files that do not exist: {sorted(set(missing))}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_project_files_and_make_targets_named_by_the_workflows_exist(path: Path) -> None:
    missing = []
    for step in _steps(_load(path)):
        texts = [step.get("run", "")] + [str(v) for v in (step.get("with") or {}).values()]
        for text in texts:
            missing += [m for m in PROJECT_PATTERN.findall(text) if not (REPO / m).is_file()]
            for target in re.findall(r"(?m)^\s*make ([\w-]+)", text):
                makefile = REPO / "Makefile"
                if not makefile.is_file() or not re.search(rf"(?m)^{re.escape(target)}:", makefile.read_text()):
                    missing.append(f"Makefile target {target}")
            if "[test]" in text:
                pyproject = REPO / "pyproject.toml"
                if not pyproject.is_file() or not re.search(r"(?m)^test\s*=", pyproject.read_text()):
                    missing.append("the test extra in pyproject.toml")
    assert not missing, f"{path.name} relies on {sorted(set(missing))}, which the project does not have"


def test_ci_runs_the_linters_the_test_suite_and_the_chart_checks() -> None:
    text = (REPO / ".github" / "workflows" / "ci.yml").read_text()
    assert "make lint" in text
    # The lint target checks style over the whole tree, types and the layer contracts; `make test`
    # (what .ci/run calls) runs it before the suite.
    makefile = (REPO / "Makefile").read_text()
    lint = re.search(r"(?m)^lint:.*\n((?:\t.*\n)+)", makefile)
    assert lint is not None
    assert [line.strip() for line in lint.group(1).splitlines()] == [
        "$(BIN)/ruff check .",
        "$(BIN)/mypy",
        "$(BIN)/lint-imports",
    ]
    test = re.search(r"(?m)^test:.*\n((?:\t.*\n)+)", makefile)
    assert test is not None and "$(MAKE) --no-print-directory lint" in test.group(1)
    assert "make test" in text
    assert "pytest tests/deploy" in text
    on = _load(REPO / ".github" / "workflows" / "ci.yml")["on"]
    assert "push" in on and "pull_request" in on


def test_release_builds_both_architectures_and_pushes_to_ghcr_and_ocir() -> None:
    workflow = _load(REPO / ".github" / "workflows" / "release.yml")
    build = next(s for s in _steps(workflow) if s.get("uses", "").startswith("docker/build-push-action@"))
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["push"] is True
    uses = {s.get("uses", "").split("@")[0] for s in _steps(workflow)}
    assert {"docker/setup-qemu-action", "docker/setup-buildx-action", "docker/metadata-action"} <= uses
    text = (REPO / ".github" / "workflows" / "release.yml").read_text()
    assert "ghcr.io/" in text and "OCIR_REGISTRY" in text
    assert "type=semver,pattern={{version}}" in text and "type=sha" in text


@pytest.mark.parametrize("name", ["deploy-minikube.yml", "deploy-oke.yml"])
def test_deploys_use_pinned_helm_4_and_the_smoke_test(name: str) -> None:
    workflow = _load(REPO / ".github" / "workflows" / name)
    text = (REPO / ".github" / "workflows" / name).read_text()
    assert workflow["env"]["HELM_VERSION"] == "v4.2.3"
    assert "--rollback-on-failure --wait --timeout 10m" in text
    assert "--atomic" not in text  # removed from `helm install` in Helm 4
    assert "port-forward svc/doable-api 8000:80" in text
    assert "exec deploy/doable-api -c api -- doable token --user smoke" in text
    assert "python scripts/smoke_test.py --base-url http://127.0.0.1:8000" in text
    assert "helm test" in text


def test_minikube_installs_dapr_and_the_chart_with_its_values() -> None:
    text = (REPO / ".github" / "workflows" / "deploy-minikube.yml").read_text()
    assert "medyagh/setup-minikube@" in text
    assert "helm upgrade --install dapr dapr/dapr" in text and "-f chart/dapr-values-oke.yaml" in text
    assert "-f chart/values-minikube.yaml" in text


def test_oke_deploys_on_release_or_by_hand_and_can_roll_back() -> None:
    workflow = _load(REPO / ".github" / "workflows" / "deploy-oke.yml")
    assert _load(REPO / ".github" / "workflows" / "release.yml")["name"] == "Release"
    assert set(workflow["on"]) == {"workflow_run", "workflow_dispatch"}
    assert workflow["on"]["workflow_run"]["workflows"] == ["Release"]
    assert "rollback" in workflow["jobs"]
    text = (REPO / ".github" / "workflows" / "deploy-oke.yml").read_text()
    assert "oracle-actions/configure-kubectl-oke@" in text
    assert "helm rollback" in text and "-f chart/values-oke.yaml" in text


# --- pinned actions --------------------------------------------------------------------------------

PINS_FILE = Path(__file__).resolve().parent / "action_pins.json"
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$", re.MULTILINE)
PINNED = re.compile(r"^(?P<action>[\w.-]+/[\w.-]+)@(?P<sha>[0-9a-f]{40})$")
TAG_COMMENT = re.compile(r"^\s+# (?P<tag>v\d+\.\d+\.\d+)\s*$")


def _pins() -> dict[str, dict[str, str]]:
    import json

    return {k.lower(): v for k, v in json.loads(PINS_FILE.read_text()).items() if not k.startswith("_")}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_verified_commit_with_its_tag(path: Path) -> None:
    """A tag can move or not exist (configure-kubectl-oke@v1 and login-action@v4.4.0 did not):
    each `uses:` names a full commit SHA, with the release tag it was read from in a comment,
    and both match tests/deploy/action_pins.json (looked up in the actions' repositories)."""
    pins = _pins()
    found = USES.finditer(path.read_text())
    refs = [(m.group("ref"), m.group("rest")) for m in found]
    assert refs, path.name
    for ref, rest in refs:
        pinned = PINNED.match(ref)
        assert pinned, f"{path.name}: {ref} is not pinned to a 40-hex commit SHA"
        comment = TAG_COMMENT.match(rest)
        assert comment, f"{path.name}: {ref} has no '# vX.Y.Z' comment"
        action = pinned.group("action").lower()
        assert action in pins, f"{path.name}: {action} is not in {PINS_FILE.name}"
        assert pinned.group("sha") == pins[action]["sha"], f"{path.name}: {action} SHA differs from {PINS_FILE.name}"
        assert comment.group("tag") == pins[action]["tag"], f"{path.name}: {action} tag differs from {PINS_FILE.name}"


def test_the_pin_table_is_complete_and_used() -> None:
    pins = _pins()
    used = {
        PINNED.match(m.group("ref")).group("action").lower()  # type: ignore[union-attr]
        for path in WORKFLOWS
        for m in USES.finditer(path.read_text())
        if PINNED.match(m.group("ref"))
    }
    assert used == set(pins), f"unused pins: {set(pins) - used}; missing: {used - set(pins)}"
    for action, pin in pins.items():
        assert re.fullmatch(r"[0-9a-f]{40}", pin["sha"]) and re.fullmatch(r"v\d+\.\d+\.\d+", pin["tag"]), action
    assert (
        "oracle-actions/configure-kubectl-oke" in pins and pins["oracle-actions/configure-kubectl-oke"]["tag"] != "v1"
    )


# --- secrets and environments ----------------------------------------------------------------------

#: Secrets kept in the `oke` GitHub environment (docs/deploy.md): only a job that declares
#: `environment: oke` can read them; anywhere else they are empty strings.
OKE_ENVIRONMENT_SECRETS = {name for name in DOCUMENTED_SECRETS if name.startswith(("OCI", "OKE"))}


def _job_secrets(job: dict[str, Any]) -> set[str]:
    return set(re.findall(r"secrets\.([A-Z0-9_]+)", yaml.safe_dump(job)))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_jobs_reading_oke_secrets_declare_the_oke_environment(path: Path) -> None:
    workflow = _load(path)
    workflow_level = set(re.findall(r"secrets\.([A-Z0-9_]+)", yaml.safe_dump(workflow.get("env", {}))))
    for name, job in workflow["jobs"].items():
        used = (_job_secrets(job) | workflow_level) & OKE_ENVIRONMENT_SECRETS
        if used:
            assert job.get("environment") == "oke", (
                f"{path.name}: job {name} reads {sorted(used)} without the oke environment"
            )
    if path.name == "deploy-minikube.yml":
        # OPENAI_API_KEY must then be a repository secret: the job has no environment.
        assert all("environment" not in job for job in workflow["jobs"].values())


def test_the_ocir_push_runs_in_the_oke_environment_and_fails_on_a_missing_secret() -> None:
    workflow = _load(REPO / ".github" / "workflows" / "release.yml")
    pushing = {
        name: job
        for name, job in workflow["jobs"].items()
        if any("OCIR_REGISTRY" in str(step.get("with", {})) for step in job.get("steps", []))
    }
    assert list(pushing) == ["ocir"], list(pushing)
    job = pushing["ocir"]
    assert job["environment"] == "oke"
    assert job["needs"] == "image"
    # Nothing OCIR-related is conditional: a missing secret must fail the run, not skip a step.
    assert "if" not in job and all("if" not in step for step in job["steps"])
    check = job["steps"][0]
    assert "OCIR_REGISTRY OCIR_NAMESPACE OCIR_USERNAME OCIR_AUTH_TOKEN" in check["run"]
    assert "exit 1" in check["run"] and "::error::" in check["run"]
    copy = job["steps"][-1]["run"]
    assert "imagetools create" in copy and 'select(.platform.os != "unknown")' in copy
    # The image job pushes to GHCR only and hands its digest over.
    image = workflow["jobs"]["image"]
    assert "environment" not in image and "digest" in image["outputs"]
    assert "OCIR" not in yaml.safe_dump(image)
    # The OKE deploy waits for the whole Release (GHCR and OCIR) to succeed.
    deploy = _load(REPO / ".github" / "workflows" / "deploy-oke.yml")
    assert "conclusion == 'success'" in deploy["jobs"]["deploy"]["if"]


@pytest.mark.parametrize("name", ["deploy-minikube.yml", "deploy-oke.yml"])
def test_the_smoke_test_checks_that_the_api_accepts_the_minted_token(name: str) -> None:
    text = (REPO / ".github" / "workflows" / name).read_text()
    minted = text.index("doable token --user smoke")
    checked = text.index('-H "Authorization: Bearer ${token}" http://127.0.0.1:8000/api/tasks')
    assert minted < checked < text.index("python scripts/smoke_test.py")
    assert "helm test" in text and "--logs" in text  # works now that the test hook is a Pod
