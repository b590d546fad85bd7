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


# -- per-role installs: what each role imports is what its extra declares

# Role -> (its source folder, the extras a plain `pip install edgefleet[ROLE]` brings).
ROLES = {"agent": "device_agents", "fleet": "fleet", "trainer": "trainer"}
# Optional parts of a role with their own extra: the import is lazy and names that extra.
OPTIONAL_EXTRAS = {"fleet": ("s3", "postgresql")}
# Declared but used only through another package (never imported by name).
USED_INDIRECTLY = {
    "python-multipart": "FastAPI parses the package upload form with it",
    "onnx": "torch.onnx.export writes through it",
    "onnxscript": "torch's dynamo ONNX exporter",
    "transformers": "bring-your-own Hugging Face models",
    "tokenizers": "text models' tokenizer.json",
}


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _dist_name(requirement: str) -> str:
    import re

    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _third_party_imports(folder: str) -> set[str]:
    import ast

    std = set(sys.stdlib_module_names)
    found = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in std and m not in ("edgefleet", "__future__")}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_role_declares_what_it_imports(role):
    """fleet/_auth.py imported argon2 while the fleet extra listed bcrypt (unused): it
    worked only because amqtt 0.12 happens to pull argon2."""
    from importlib.metadata import packages_distributions

    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    declared = {_dist_name(r) for r in project["dependencies"] + extras[role]}
    optional = {_dist_name(r) for e in OPTIONAL_EXTRAS.get(role, ()) for r in extras[e]}
    dists = packages_distributions()
    imported: dict[str, set[str]] = {}
    for module in _third_party_imports(ROLES[role]):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        imported[module] = names
    undeclared = {m: n for m, n in imported.items() if not n & (declared | optional)}
    # Parts of a declared package, imported directly (pydantic's, FastAPI's, boto3's core).
    parts = ("pydantic_core", "starlette", "botocore")
    undeclared = {m: n for m, n in undeclared.items() if m not in parts}
    assert not undeclared, f"{role} imports {undeclared} but its extra does not declare them"
    used = set().union(*imported.values())
    unused = {_dist_name(r) for r in extras[role]} - used - set(USED_INDIRECTLY)
    assert not unused, f"the {role} extra declares {unused}, which {ROLES[role]}/ never imports"


def _venv(tmp: Path, wheel: Path, extra: str) -> Path:
    venv = tmp / f"venv-{extra}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        # --no-compile: byte-compiling torch and transformers was minutes of the trainer's
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile",
         f"{wheel}[{extra}]", "-c", str(ROOT / "requirements" / "dev.lock")],
        check=True, timeout=1200,
    )  # fmt: skip
    return venv


def _clean_env(**extra: str) -> dict:
    import os

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EDGEFLEET_", "PYTHONPATH", "VIRTUAL_ENV"))}  # fmt: skip
    return {**env, **extra}


@pytest.mark.slow
def test_agent_role_installs_and_starts(wheel, tmp_path):
    """edgefleet[agent] alone: ``agent run`` starts and keeps retrying while the broker is
    unreachable, stops cleanly on SIGTERM; the fleet command names the extra it lacks."""
    import signal
    import time

    from tests.support.mosquitto import free_port

    venv = _venv(tmp_path, wheel, "agent")
    ef, env = str(venv / "bin" / "edgefleet"), _clean_env()
    out = subprocess.run([ef, "agent", "run", "--help"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "--config" in out.stdout, out.stderr
    # Missing extra: a clear message, not "No such command 'serve'".
    out = subprocess.run([ef, "fleet", "serve"], capture_output=True, text=True, env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "pip install 'edgefleet[fleet]'" in out.stderr, out.stderr
    assert "No such command" not in out.stdout + out.stderr
    dead = free_port()  # nothing listens here: the agent must wait, not exit
    log = tmp_path / "agent.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [ef, "agent", "run", "--device-id", "role-agent", "--broker",
             f"mqtt://127.0.0.1:{dead}", "--data-dir", str(tmp_path / "data")],
            stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=tmp_path,
        )  # fmt: skip
    try:
        time.sleep(4)
        assert proc.poll() is None, log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    assert code == 0, log.read_text()
    assert (tmp_path / "data" / "store").is_dir()  # it really started (its store exists)


@pytest.mark.slow
@pytest.mark.broker
def test_fleet_role_installs_and_serves_health(wheel, tmp_path, mosquitto):
    import json
    import time
    import urllib.request

    from tests.support.mosquitto import free_port
    from tests.support.processes import stop_process

    venv = _venv(tmp_path, wheel, "fleet")
    port = free_port()
    env = _clean_env(EDGEFLEET_FLEET_DATA_DIR=str(tmp_path / "fleet"),
                     EDGEFLEET_FLEET_BROKER_URL=mosquitto.url)  # fmt: skip
    log = tmp_path / "fleet.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [str(venv / "bin" / "edgefleet"), "fleet", "serve", "--port", str(port)],
            stdout=err, stderr=err, env=env, cwd=tmp_path,
        )  # fmt: skip
    try:
        health, deadline = None, time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    health = json.loads(r.read())
                if health.get("mqtt_connected"):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert health is not None and health["status"] == "ok", log.read_text()[-3000:]
        assert health["mqtt_connected"] is True and health["database"] == "sqlite", health
    finally:
        stop_process(proc, 30)


DIGITS_ONE_EPOCH = """\
name = "digits"
version = "1.0.0"
targets = ["x86_64-cpu"]
[model]
name = "digits_cnn"
args = { width = 8, hidden = 32 }
[data]
dataset = "digits"
[train]
epochs = 1
threads = 1
[export]
formats = ["onnx"]
precisions = ["fp32"]
[verify]
latency_runs = 3
golden_samples = 2
"""


@pytest.mark.slow
def test_trainer_role_installs_and_trains(wheel, tmp_path):
    """edgefleet[trainer] alone (torch 2.13.0 CPU from the local wheel index): one epoch of
    digits, exported, verified, packaged and signed."""
    venv = _venv(tmp_path, wheel, "trainer")
    ef, env = str(venv / "bin" / "edgefleet"), _clean_env()
    subprocess.run([ef, "keys", "new", "--out", str(tmp_path / "keys"), "--name", "k"],
                   check=True, env=env, capture_output=True)  # fmt: skip
    recipe = tmp_path / "digits-1-epoch.toml"
    recipe.write_text(DIGITS_ONE_EPOCH)
    out = subprocess.run(
        [ef, "train", str(recipe), "--key", str(tmp_path / "keys" / "k.key"),
         "--out", str(tmp_path / "out"), "--quiet"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    pkg = tmp_path / "out" / "digits-1.0.0.efpkg"
    assert pkg.is_file(), out.stdout
    probe = (
        "import sys; from edgefleet.sdk import load; "
        "m = load(sys.argv[1], options=None); print(m.smoke_test().passed)"
    )
    check = subprocess.run([str(venv / "bin" / "python"), "-c", probe, str(pkg)],
                           capture_output=True, text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert check.stdout.strip() == "True", check.stderr
