"""Prepare an emulated aarch64 userland: Debian arm64 .debs + aarch64 wheels, run by qemu-user.

Everything lands in one cache directory and each step leaves a marker, so re-running is a
no-op. The edgefleet source itself is not copied: an overlay of symlinks points at the live
source, so the emulated cells always run the code under test.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ._errors import EmulatorError

__all__ = [
    "DEBS",
    "WHEELS",
    "WHEELS_NO_DEPS",
    "EmulatorRoot",
    "find_emulator",
    "prepare_emulator",
]

log = logging.getLogger(__name__)

QEMU = "qemu-aarch64-static"
# Debian bookworm arm64: python3.11 and the shared libraries it and the wheels link against.
DEBS = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6",
    "libgcc-s1", "gcc-12-base", "libstdc++6", "libbz2-1.0", "libcrypt1", "libdb5.3",
    "libexpat1", "libffi8", "liblzma5", "libncursesw6", "libtinfo6", "libnsl2", "libtirpc3",
    "libreadline8", "libsqlite3-0", "libssl3", "libuuid1", "zlib1g", "libgssapi-krb5-2",
    "libk5crypto3", "libkrb5-3", "libkrb5support0", "libkeyutils1", "libcom-err2",
)  # fmt: skip
# onnxruntime 1.20.1 is the newest seen to import under qemu 7.2 (1.31.1 crashes at import).
# It is installed without its declared dependencies: importing it needs only numpy, and
# sympy alone would double the download and the emulated import time.
WHEELS = ("numpy", "pydantic", "cryptography")
WHEELS_NO_DEPS = ("onnxruntime==1.20.1",)
PLATFORMS = (
    "manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64",
    "manylinux2014_aarch64",
)  # fmt: skip
# The edgefleet packages an emulated cell imports (hardware.hil runs the cell).
_SOURCES = ("sdk", "hardware")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EmulatorRoot:
    cache: Path

    @property
    def root(self) -> Path:
        return self.cache / "root"

    @property
    def site(self) -> Path:
        return self.cache / "site"

    @property
    def overlay(self) -> Path:
        return self.cache / "overlay"

    @property
    def python(self) -> Path:
        return self.root / "usr/bin/python3.11"

    def qemu(self) -> str:
        found = shutil.which(QEMU)
        if not found:
            raise EmulatorError(
                f"{QEMU} not found; install it: apt-get install -y qemu-user-static"
            )
        return found

    def command(self, *args: str) -> list[str]:
        """argv that runs the emulated python3.11 with ``args``."""
        # -P: the cwd (maybe a checkout with its own edgefleet/ folder) must not shadow the overlay.
        return [self.qemu(), "-L", str(self.root), str(self.python), "-P", *args]

    def env(self) -> dict[str, str]:
        return {
            "PYTHONPATH": f"{self.overlay}:{self.site}",
            "PYTHONNOUSERSITE": "1",
            # Byte-code compiled once (by the probe) into the cache, not per cell: compiling
            # under qemu costs seconds per run.
            "PYTHONPYCACHEPREFIX": str(self.cache / "pycache"),
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(self.cache),
        }

    def info(self) -> dict:
        path = self.cache / "emulator.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def ready(self) -> bool:
        return (self.cache / "emulator.json").exists() and self.python.exists()


def _marker(cache: Path, step: str, payload: tuple[str, ...]) -> Path:
    digest = hashlib.sha256("\n".join(payload).encode()).hexdigest()[:16]
    return cache / f".done-{step}-{digest}"


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    log.debug("running %s", cmd)
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-1500:]
        raise EmulatorError(f"{what} failed (exit {proc.returncode}): {tail}")
    return proc


def _ensure_apt_arm64() -> None:
    foreign = _run(["dpkg", "--print-foreign-architectures"], "dpkg").stdout.split()
    if "arm64" in foreign:
        return
    if os.geteuid() != 0:
        raise EmulatorError(
            "the arm64 apt architecture is not enabled; as root run: "
            "dpkg --add-architecture arm64 && apt-get update"
        )
    _run(["dpkg", "--add-architecture", "arm64"], "dpkg --add-architecture arm64")
    _run(["apt-get", "update", "-qq"], "apt-get update")


def _debs(cache: Path, progress: Progress) -> None:
    done = _marker(cache, "debs", DEBS)
    if done.exists() and (cache / "root/usr/bin/python3.11").exists():
        return
    _ensure_apt_arm64()
    debdir, root = cache / "debs", cache / "root"
    debdir.mkdir(parents=True, exist_ok=True)
    have = {p.name.split("_")[0] for p in debdir.glob("*.deb")}
    missing = [f"{d}:arm64" for d in DEBS if d not in have]
    if missing:
        progress(f"downloading {len(missing)} arm64 .debs")
        cmd = ["apt-get", "download", "-o", "APT::Architecture=arm64", *missing]
        try:
            _run(cmd, "apt-get download", cwd=debdir)
        except EmulatorError:
            if os.geteuid() != 0:
                raise
            # Stale package lists (arm64 added without an update since): refresh once.
            _run(["apt-get", "update", "-qq"], "apt-get update")
            _run(cmd, "apt-get download", cwd=debdir)
    progress("unpacking the arm64 userland")
    root.mkdir(parents=True, exist_ok=True)
    for deb in sorted(debdir.glob("*.deb")):
        _run(["dpkg", "-x", str(deb), str(root)], f"dpkg -x {deb.name}")
    done.touch()


def _wheels(cache: Path, progress: Progress) -> None:
    done = _marker(cache, "wheels", WHEELS + WHEELS_NO_DEPS + PLATFORMS)
    if done.exists():
        return
    progress("installing aarch64 wheels (" + ", ".join(WHEELS + WHEELS_NO_DEPS) + ")")
    site = cache / "site"
    tmp = cache / "site.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    platforms = [x for p in PLATFORMS for x in ("--platform", p)]
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-compile", "--target", str(tmp), "--only-binary=:all:", "--python-version",
           "3.11", "--implementation", "cp", *platforms]  # fmt: skip
    _run([*pip, *WHEELS], "pip install (aarch64 wheels)")
    _run([*pip, "--no-deps", *WHEELS_NO_DEPS], "pip install (aarch64 onnxruntime)")
    shutil.rmtree(site, ignore_errors=True)
    tmp.rename(site)  # only a complete install replaces the old one
    done.touch()


def _compile(emu: EmulatorRoot, progress: Progress) -> None:
    """Byte-compile the stdlib and wheels with the host python (3.11 byte-code is the same on
    every arch) into the emulated python's pycache prefix: compiling under qemu is slow."""
    done = _marker(emu.cache, "pyc", WHEELS + WHEELS_NO_DEPS)
    if done.exists():
        return
    progress("compiling byte-code")
    env = {**os.environ, "PYTHONPYCACHEPREFIX": emu.env()["PYTHONPYCACHEPREFIX"]}
    dirs = [str(emu.site), str(emu.root / "usr/lib/python3.11")]
    _run([sys.executable, "-m", "compileall", "-q", "-j", "0", *dirs], "compileall", env=env)
    done.touch()


def _overlay(emu: EmulatorRoot) -> None:
    """``overlay/edgefleet/{sdk,hardware}`` -> the live source folders of this install."""
    import edgefleet

    pkg = emu.overlay / "edgefleet"
    pkg.mkdir(parents=True, exist_ok=True)
    init = pkg / "__init__.py"
    text = Path(edgefleet.__file__).read_text()
    if not init.exists() or init.read_text() != text:
        init.write_text(text)
    for name in _SOURCES:
        mod = __import__(f"edgefleet.{name}", fromlist=["__path__"])
        target = Path(list(mod.__path__)[0]).resolve()
        link = pkg / name
        if link.is_symlink() and link.resolve() == target:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    # compileall does not descend into symlinked folders, so name each one; it skips
    # files whose byte-code is current, so this is cheap when nothing changed.
    env = {**os.environ, "PYTHONPYCACHEPREFIX": emu.env()["PYTHONPYCACHEPREFIX"]}
    dirs = [str(pkg / name) for name in _SOURCES]
    _run([sys.executable, "-m", "compileall", "-q", str(init), *dirs], "compileall", env=env)


_PROBE = (
    "import json, platform, numpy, onnxruntime, pydantic, cryptography, edgefleet.sdk; "
    "print(json.dumps({'machine': platform.machine(), 'python': platform.python_version(), "
    "'numpy': numpy.__version__, 'onnxruntime': onnxruntime.__version__, "
    "'pydantic': pydantic.__version__}))"
)


def prepare_emulator(cache: str | Path, progress: Progress | None = None) -> EmulatorRoot:
    """Build (or reuse) the emulated aarch64 root in ``cache`` and check that it runs."""
    say = progress or (lambda msg: log.info("%s", msg))
    emu = EmulatorRoot(Path(cache).resolve())
    emu.cache.mkdir(parents=True, exist_ok=True)
    qemu = emu.qemu()
    _debs(emu.cache, say)
    _wheels(emu.cache, say)
    _compile(emu, say)
    _overlay(emu)
    if not emu.python.exists():
        raise EmulatorError(f"{emu.python} missing after unpacking the arm64 .debs")
    info_path = emu.cache / "emulator.json"
    if not info_path.exists():
        say("checking the emulated python")
        out = _run(emu.command("-c", _PROBE), "emulated python probe", env=emu.env(), timeout=300)
        info = json.loads(out.stdout.strip().splitlines()[-1])
        qv = _run([qemu, "--version"], "qemu --version").stdout.splitlines()[0]
        info["qemu"] = qv
        info_path.write_text(json.dumps(info, indent=2))
    return emu


def find_emulator(cache: str | Path | None) -> EmulatorRoot | None:
    """The prepared root in ``cache``, or None if it was never prepared there."""
    if cache is None:
        return None
    emu = EmulatorRoot(Path(cache).resolve())
    if not emu.ready():
        return None
    _overlay(emu)  # cheap; keeps links and byte-code current with the source
    return emu
