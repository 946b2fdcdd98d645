"""A one-command start from a built wheel, as the README shows it:
`uvx --from dist/doable-<version>-py3-none-any.whl doable serve` in an environment of its own, up
to /readyz. And what the wheel (so `make serve`) installs: what running needs, no test or
benchmark tools."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import httpx2
import pytest

from doable import __version__
from tests.servers import serve_doable

ROOT = Path(__file__).resolve().parents[2]
UVX = str(Path(sys.executable).parent / "uvx")
# Packages only the test and bench extras may bring.
NOT_FOR_RUNNING = {"pytest", "ruff", "hypothesis", "playwright", "schemathesis", "psutil", "py-spy", "uv", "respx"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    into = tmp_path_factory.mktemp("dist")
    shutil.rmtree(ROOT / "build" / "lib", ignore_errors=True)  # setuptools would pack what is left there
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(into), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [built] = into.glob("doable-*.whl")
    return built


def test_the_wheel_requires_only_what_running_needs(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        metadata = Parser().parsestr(whl.read(f"doable-{__version__}.dist-info/METADATA").decode())
    required = metadata.get_all("Requires-Dist") or []
    always = {
        r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower()
        for r in required
        if "extra ==" not in r
    }
    assert {"mcp", "fastapi", "uvicorn", "sqlmodel"} <= always
    assert not always & NOT_FOR_RUNNING, always & NOT_FOR_RUNNING
    assert {"test", "bench"} <= set(metadata.get_all("Provides-Extra") or [])


def test_uvx_starts_doable_from_the_wheel(wheel: Path, tmp_path: Path) -> None:
    # Run from an empty folder: nothing may come from this source tree or the suite's venv; this
    # machine's Python, never one uv would download (from outside PyPI). A cold uv cache downloads
    # the dependencies first, hence the long wait.
    uvx = [UVX, "--isolated", "--constraints", str(ROOT / "constraints.txt"), "--from", str(wheel), "doable"]
    with serve_doable(
        tmp_path / "data",
        command=uvx,
        cwd=tmp_path,
        timeout=180,
        VIRTUAL_ENV="",
        PYTHONPATH="",
        UV_PYTHON=sys.executable,
        UV_PYTHON_DOWNLOADS="never",
    ) as served:
        assert httpx2.get(f"{served.base}/readyz", timeout=5).json()["status"] == "ready"
        openapi = httpx2.get(f"{served.base}/openapi.json", timeout=5).json()
        assert openapi["info"]["version"] == __version__
        assert httpx2.get(f"{served.base}/api/tasks", timeout=5).status_code == 401
