"""The Claude Desktop bundle: `make mcpb`'s build (the pinned MCPB CLI validates and packs it)
gives a `.mcpb` that runs as Claude Desktop runs it: uv installs Doable from the packed wheel,
and `doable mcp` answers over stdio with the person's settings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from doable import __version__
from tests.servers import clean_env

ROOT = Path(__file__).resolve().parents[2]
UV = str(Path(sys.executable).parent / "uv")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("npm") is None and not os.environ.get("CI"), reason="npm is not installed (required in CI)"
    ),
]


def _as_claude_desktop_runs_it(manifest: dict, folder: Path, settings: dict[str, str]) -> StdioServerParameters:
    """The manifest's command with Claude Desktop's substitutions: the bundle's folder and the
    person's settings (one left empty stays unfilled, `${user_config.…}`, the harder case)."""

    def fill(text: str) -> str:
        text = text.replace("${__dirname}", str(folder))
        for key, value in settings.items():
            text = text.replace("${user_config." + key + "}", value)
        return text

    config = manifest["server"]["mcp_config"]
    assert config["command"] == "uv"
    env = {k: fill(v) for k, v in config["env"].items()}
    # This machine's Python, never one uv would download (from outside PyPI).
    local_python = {"UV_PYTHON": sys.executable, "UV_PYTHON_DOWNLOADS": "never"}
    return StdioServerParameters(
        command=UV,
        args=[fill(a) for a in config["args"]],
        env={**clean_env(Path(settings["data_dir"]), **local_python), **env},
    )


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """`make mcpb`'s build, into a folder of this test."""
    out = tmp_path / "doable.mcpb"
    built = subprocess.run(
        [sys.executable, "packaging/mcpb/build.py", "--out", str(out)], cwd=ROOT, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert "Manifest schema validation passes!" in built.stderr
    return out


async def test_the_bundle_builds_validates_and_runs_as_claude_desktop_runs_it(bundle: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(bundle) as packed:
        names = set(packed.namelist())
        manifest = json.loads(packed.read("manifest.json"))
        packed.extractall(tmp_path / "installed")
    assert {
        "manifest.json",
        "server/main.py",
        "pyproject.toml",
        f"wheels/doable-{__version__}-py3-none-any.whl",
    } <= names
    assert (manifest["version"], manifest["server"]["type"]) == (__version__, "uv")
    assert set(manifest["user_config"]) == {"data_dir", "time_zone", "token"}
    assert manifest["user_config"]["token"]["sensitive"] is True

    data = tmp_path / "data"
    params = _as_claude_desktop_runs_it(
        manifest, tmp_path / "installed", {"data_dir": str(data), "time_zone": "Europe/Berlin"}
    )
    async with Client(params) as client:
        assert client.server_info is not None and client.server_info.version == __version__
        tools = {t.name for t in (await client.list_tools()).tools}
        assert tools == {t["name"] for t in manifest["tools"]}  # the install dialog lists what runs
        profile = (await client.call_tool("get_profile", {})).structured_content
        assert profile is not None and (profile["user_id"], profile["timezone"]) == ("local", "Europe/Berlin")
    assert (data / "doable.db").exists()  # the chosen data folder, not the default one
