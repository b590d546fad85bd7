"""The built wheel holds every subpackage and data file, and a device install stays small."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.test_layering import FOLDERS

ROOT = Path(__file__).resolve().parent.parent
# source folder -> its place in the wheel (the folders of the layering test, plus the root).
MAPPING = {"edgefleet": "edgefleet", **{f: m.replace(".", "/") for f, m in FOLDERS.items()}}
DATA_SUFFIXES = {".toml", ".json", ".html", ".js", ".css", ".ini", ".mako", ".service"}


def _tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *MAPPING],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [ROOT / line for line in out.stdout.splitlines() if (ROOT / line).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
    )
    (whl,) = out.glob("edgefleet-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_contains_every_module_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = []
    for path in _tracked_files():
        rel = path.relative_to(ROOT)
        if path.suffix != ".py" and path.suffix not in DATA_SUFFIXES:
            continue
        # data files count only inside a package (a folder with __init__.py)
        if path.suffix != ".py" and not (path.parent / "__init__.py").exists():
            continue
        expected.append(f"{MAPPING[rel.parts[0]]}/{'/'.join(rel.parts[1:])}")
    missing = sorted(e for e in expected if e not in names)
    assert expected and not missing, f"missing from the wheel: {missing}"
    assert "edgefleet/sdk/manifest.schema.json" in names
    assert any(n.startswith("edgefleet/hardware/profiles/") and n.endswith(".toml") for n in names)


@pytest.mark.slow
def test_agent_install_pulls_no_torch(wheel, tmp_path):
    """pip install edgefleet[agent,onnxruntime,litert] into a fresh venv: no torch, no
    fastapi, no sqlalchemy; importing the SDK and the agent imports no torch."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", f"{wheel}[agent,onnxruntime,litert]"],
        check=True,
        timeout=600,
    )
    listed = subprocess.run(
        [str(py), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    installed = {line.split("==")[0] for line in listed.splitlines()}
    for heavy in ("torch", "fastapi", "sqlalchemy", "uvicorn", "executorch"):
        assert heavy not in installed, f"a device install pulled {heavy}"
    assert {"onnxruntime", "ai-edge-litert", "paho-mqtt"} <= installed
    probe = (
        "import sys, edgefleet.sdk, edgefleet.device_agents, edgefleet.sdk.protocol; "
        "assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    )
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
