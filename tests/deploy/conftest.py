"""Session fixtures of the deployment tests (helpers live in deploy_support.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The test modules import deploy_support whatever pytest's import mode is.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_support import VARIANTS, Rendered, render, user_values


@pytest.fixture(scope="session")
def rendered() -> dict[str, Rendered]:
    """The chart rendered for every variant (once per session)."""
    return {name: render(user_values(files, overrides), name) for name, (files, overrides) in VARIANTS.items()}


@pytest.fixture(scope="session")
def rendered_dirs(rendered: dict[str, Rendered], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each variant's manifests written as one YAML file per template, for the command-line tools."""
    dirs: dict[str, Path] = {}
    for name, result in rendered.items():
        out = tmp_path_factory.mktemp(f"rendered-{name}")
        for path, text in result.templates.items():
            if path.endswith(".txt") or not text.strip():
                continue
            target = out / path.replace("/", "__")
            target.write_text(text)
        dirs[name] = out
    return dirs
