"""The Dockerfile: hadolint-clean, multi-stage, non-root, one image for every role."""

from __future__ import annotations

import json
import re
import subprocess

from deploy_support import REPO, tool

DOCKERFILE = REPO / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_hadolint_finds_nothing() -> None:
    completed = subprocess.run(
        [tool("hadolint"), "--config", str(REPO / ".hadolint.yaml"), "-f", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(completed.stdout or "[]")
    assert completed.returncode == 0 and not findings, json.dumps(findings, indent=2) + completed.stderr


def test_multi_stage_from_a_pinned_slim_python() -> None:
    instructions = _instructions()
    args = {v.split("=", 1)[0]: v.split("=", 1)[1] for k, v in instructions if k == "ARG" and "=" in v}
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.1[12]\.\d+-slim(-\w+)?", base), base
    stages = [v for k, v in instructions if k == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]


def test_dependencies_come_from_the_lock_in_the_build_stage_only() -> None:
    instructions = _instructions()
    runtime_at = next(i for i, (k, v) in enumerate(instructions) if k == "FROM" and v.endswith("AS runtime"))
    build, runtime = instructions[:runtime_at], instructions[runtime_at:]
    installs = [v for k, v in build if k == "RUN" and "pip install" in v]
    assert installs and all("-c constraints.txt" in v for v in installs)
    assert any("--only-binary=:all:" in v for v in installs), "dependencies must come from wheels (no compiler)"
    runtime_text = " ".join(v for _, v in runtime)
    assert "pip install" not in runtime_text and "apt-get" not in runtime_text
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in runtime


def test_runs_as_a_numeric_non_root_user_with_one_entrypoint() -> None:
    instructions = _instructions()
    users = [v for k, v in instructions if k == "USER"]
    assert users[-1] == "10001:10001"
    assert ("ENTRYPOINT", '["doable"]') in instructions
    assert ("CMD", '["serve", "--host", "0.0.0.0", "--port", "8000"]') in instructions
    assert ("EXPOSE", "8000") in instructions


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "an allow-list keeps secrets, .git and venvs out of the build context"
    for needed in ("!pyproject.toml", "!constraints.txt", "!doable/"):
        assert needed in lines
