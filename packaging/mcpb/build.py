"""Builds the Claude Desktop bundle, dist/doable.mcpb (`make mcpb`).

The bundle is a `uv` server (MCPB manifest 0.4): Claude Desktop installs Python and the
dependencies with uv on the person's machine, so nothing platform-specific is packed. Inside:
manifest.json (this folder's, with the version of the wheel), server/main.py (this folder's
main.py), the Doable wheel, and a pyproject.toml that depends on that wheel with every version
pinned as in constraints.txt. The manifest is validated and the bundle packed by the MCPB CLI at
the version package-lock.json pins, installed with `npm ci` into build/mcpb-cli.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CLI_DIR = ROOT / "build" / "mcpb-cli"
STAGE = ROOT / "build" / "mcpb" / "bundle"


def mcpb_cli() -> Path:
    """The pinned CLI, installed again only when the lockfile changed."""
    lock = HERE / "package-lock.json"
    cli = CLI_DIR / "node_modules" / ".bin" / "mcpb"
    installed = CLI_DIR / "package-lock.json"
    if not cli.exists() or not installed.exists() or installed.read_bytes() != lock.read_bytes():
        if shutil.which("npm") is None:
            raise SystemExit("`make mcpb` needs npm (Node.js 18 or newer): apt-get install npm, or see nodejs.org")
        CLI_DIR.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(HERE / name, CLI_DIR / name)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CLI_DIR, check=True, stdout=sys.stderr
        )
    return cli


def build_wheel(into: Path) -> Path:
    into.mkdir(parents=True)
    # setuptools builds in ./build/lib and never removes what is there: a module deleted from the
    # source would still be packed.
    shutil.rmtree(ROOT / "build" / "lib", ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(into), str(ROOT)],
        check=True,
        stdout=sys.stderr,
    )
    [wheel] = into.glob("doable-*.whl")
    return wheel


def pins() -> list[str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def bundle_pyproject(wheel: Path, version: str) -> str:
    # A project that is only an environment (uv does not build it): Doable from the packed wheel,
    # everything else from PyPI at the versions the test suite ran with.
    constraints = ",\n".join(f"    {json.dumps(p)}" for p in pins())
    return (
        "[project]\n"
        'name = "doable-claude-desktop"\n'
        f'version = "{version}"\n'
        'requires-python = ">=3.11"\n'
        f'dependencies = ["doable=={version}"]\n\n'
        "[tool.uv]\n"
        "package = false\n"
        f"constraint-dependencies = [\n{constraints},\n]\n\n"
        "[tool.uv.sources]\n"
        f'doable = {{ path = "wheels/{wheel.name}" }}\n'
    )


def build(out: Path) -> Path:
    cli = mcpb_cli()
    shutil.rmtree(STAGE, ignore_errors=True)
    wheel = build_wheel(STAGE / "wheels")
    version = wheel.name.split("-")[1]
    manifest = json.loads((HERE / "manifest.json").read_text())
    manifest["version"] = version
    (STAGE / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (STAGE / "server").mkdir()
    shutil.copyfile(HERE / "main.py", STAGE / "server" / "main.py")
    (STAGE / "pyproject.toml").write_text(bundle_pyproject(wheel, version))
    subprocess.run([str(cli), "validate", str(STAGE / "manifest.json")], check=True, stdout=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    subprocess.run([str(cli), "pack", str(STAGE), str(out)], check=True, stdout=sys.stderr)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "doable.mcpb", help="the bundle to write")
    print(build(parser.parse_args().out.resolve()))
