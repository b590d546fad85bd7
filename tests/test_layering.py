"""The layering of DESIGN.md section 1, enforced on the import graph of the source tree.

hardware.profiles <- sdk <- device_agents <- hardware.hil; sdk <- fleet; sdk <- trainer;
device_agents and fleet never import each other. The root ``edgefleet`` package (CLI,
demo) sits on top and may import anything.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {
    "sdk": "edgefleet.sdk",
    "trainer": "edgefleet.trainer",
    "device_agents": "edgefleet.device_agents",
    "fleet": "edgefleet.fleet",
    "hardware": "edgefleet.hardware",
}
ALLOWED = {
    "hardware.profiles": set(),
    "sdk": {"hardware.profiles"},
    "device_agents": {"sdk", "hardware.profiles"},
    "fleet": {"sdk", "hardware.profiles"},
    "trainer": {"sdk", "hardware.profiles"},
    "hardware.hil": {"sdk", "device_agents", "hardware.profiles"},
}


def _layer(module: str) -> str | None:
    """Map a dotted edgefleet module to its layer name."""
    parts = module.split(".")
    if parts[0] != "edgefleet" or len(parts) < 2:
        return "root" if parts[0] == "edgefleet" else None
    top = parts[1]
    if top == "hardware":
        return "hardware.profiles" if parts[2:3] == ["profiles"] else "hardware.hil"
    return top if top in ("sdk", "trainer", "device_agents", "fleet") else "root"


def _module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root)
    pkg = FOLDERS[rel.parts[0]]
    rest = list(rel.with_suffix("").parts[1:])
    if rest and rest[-1] == "__init__":
        rest = rest[:-1]
    return ".".join([pkg, *rest])


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    mod = _module_name(path, root)
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in found if m.startswith("edgefleet")}


def _sources(root: Path = ROOT) -> list[Path]:
    return [p for folder in FOLDERS for p in sorted((root / folder).rglob("*.py"))]


def _violations(root: Path = ROOT) -> list[str]:
    found = []
    for path in _sources(root):
        src = _layer(_module_name(path, root))
        for target in _imports(path, root):
            dst = _layer(target)
            if dst in (None, src) or dst == "root" and target == "edgefleet":
                continue
            if dst not in ALLOWED.get(src, set()):
                found.append(f"{path.relative_to(root)} ({src}) imports {target} ({dst})")
    return found


def test_import_graph_respects_layers():
    violations = _violations()
    assert not violations, "layering violations:\n" + "\n".join(violations)


def test_layer_checker_catches_a_violation(tmp_path):
    """The checker itself must be able to fail: a copy of the tree (in a temporary folder,
    never the checkout) plus a fake agent module importing the fleet."""
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("*.pyc"))
    assert _violations(tmp_path) == []
    (tmp_path / "device_agents" / "_zz_layering_probe.py").write_text(
        "from edgefleet.fleet import something\n"
    )
    found = _violations(tmp_path)
    assert found and all(re.search("_zz_layering_probe.*imports edgefleet.fleet", v) for v in found)


@pytest.mark.parametrize(
    "module", ["edgefleet.sdk", "edgefleet.sdk.protocol", "edgefleet.device_agents"]
)
def test_device_side_imports_no_torch(module):
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        "heavy = [m for m in ('torch', 'fastapi', 'sqlalchemy', 'onnxruntime') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing {module} pulled in {out.stdout.strip()}"


def test_every_package_declares_all():
    missing = []
    for path in _sources():
        # Alembic's migration folders are data for alembic, not API packages.
        if path.name != "__init__.py" or "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        names = {
            t.id
            for n in tree.body
            if isinstance(n, ast.Assign | ast.AnnAssign)
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
            if isinstance(t, ast.Name)
        }
        if "__all__" not in names:
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"packages without an explicit __all__: {missing}"


def test_public_names_resolve():
    import importlib

    for path in _sources():
        if path.name != "__init__.py":
            continue
        name = _module_name(path)
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:  # optional extras are all installed in dev
            pytest.fail(f"{name} does not import: {e}")
        for attr in getattr(mod, "__all__", []):
            assert hasattr(mod, attr), f"{name}.__all__ names {attr!r}, which does not exist"
