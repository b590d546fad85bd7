"""Prepare an emulated aarch64 userland: Debian arm64 .debs + aarch64 wheels, run by qemu-user.

Everything lands in one cache directory and each step leaves a marker, so re-running is a
no-op. The edgefleet source itself is not copied: an overlay of symlinks points at the live
source, so the emulated cells always run the code under test. qemu itself is Debian 13's
(see :mod:`._qemu`) when apt can fetch it, else the system's; which runtimes really run
under it is measured by :mod:`._probe` and recorded in ``emulator.json``.
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
from ._probe import PROBES
from ._qemu import QemuBinary, fetch_qemu, system_qemu

__all__ = [
    "DEBS",
    "WHEELS",
    "EmulatorRoot",
    "emulated_wheels",
    "find_emulator",
    "prepare_emulator",
]

log = logging.getLogger(__name__)

# Debian bookworm arm64: python3.11 and the shared libraries it and the wheels link against.
DEBS = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6",
    "libgcc-s1", "gcc-12-base", "libstdc++6", "libbz2-1.0", "libcrypt1", "libdb5.3",
    "libexpat1", "libffi8", "liblzma5", "libncursesw6", "libtinfo6", "libnsl2", "libtirpc3",
    "libreadline8", "libsqlite3-0", "libssl3", "libuuid1", "zlib1g", "libgssapi-krb5-2",
    "libk5crypto3", "libkrb5-3", "libkrb5support0", "libkeyutils1", "libcom-err2",
)  # fmt: skip
# flatbuffers: the LiteRT probe builds its model with LiteRT's flatbuffer schema.
WHEELS = ("numpy", "pydantic", "cryptography", "flatbuffers")
# Runtimes are installed without their declared dependencies: importing them needs only
# numpy (+ flatbuffers), and sympy/protobuf would double the download and import time.
# Measured: qemu 10.0 runs onnxruntime 1.32.0 and ai-edge-litert 2.3.0; qemu 7.2 runs
# onnxruntime 1.20.1 (1.31+ crash at import) and LiteRT crashes when its interpreter is
# created (installed anyway, so the probe measures and reports it).
_RUNTIME_WHEELS = {
    10: ("onnxruntime==1.32.0", "ai-edge-litert==2.3.0"),
    0: ("onnxruntime==1.20.1", "ai-edge-litert==2.3.0"),
}


def emulated_wheels(qemu_major: int) -> tuple[str, ...]:
    """The runtime wheels to install for a qemu of this major version."""
    return next(w for m, w in sorted(_RUNTIME_WHEELS.items(), reverse=True) if qemu_major >= m)


PLATFORMS = (
    "manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64",
    "manylinux2014_aarch64",
)  # fmt: skip
# The edgefleet packages an emulated cell imports (hardware.hil runs the cell).
_SOURCES = ("sdk", "hardware")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EmulatorRoot:
    """The emulated aarch64 userland in its cache directory, and how to run its Python."""

    cache: Path

    @property
    def root(self) -> Path:
        """The unpacked Debian arm64 packages: qemu's library prefix (``-L``)."""
        return self.cache / "root"

    @property
    def site(self) -> Path:
        """The aarch64 wheels, installed for the emulated Python."""
        return self.cache / "site"

    @property
    def overlay(self) -> Path:
        """Symlinks to the live edgefleet source, first on the emulated ``PYTHONPATH``."""
        return self.cache / "overlay"

    @property
    def python(self) -> Path:
        """The emulated interpreter (Debian's python3.11 for arm64)."""
        return self.root / "usr/bin/python3.11"

    def qemu(self) -> str:
        """The fetched newer qemu in the cache if there is one, else the system's."""
        fetched = self.cache / "qemu/usr/bin/qemu-aarch64"
        return str(fetched) if fetched.exists() else str(system_qemu().path)

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


def _wheels(cache: Path, runtimes: tuple[str, ...], progress: Progress) -> None:
    done = _marker(cache, "wheels", WHEELS + runtimes + PLATFORMS)
    if done.exists():
        return
    progress("installing aarch64 wheels (" + ", ".join(WHEELS + runtimes) + ")")
    site = cache / "site"
    tmp = cache / "site.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    platforms = [x for p in PLATFORMS for x in ("--platform", p)]
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-compile", "--target", str(tmp), "--only-binary=:all:", "--python-version",
           "3.11", "--implementation", "cp", *platforms]  # fmt: skip
    _run([*pip, *WHEELS], "pip install (aarch64 wheels)")
    _run([*pip, "--no-deps", *runtimes], "pip install (aarch64 runtimes)")
    shutil.rmtree(site, ignore_errors=True)
    tmp.rename(site)  # only a complete install replaces the old one
    done.touch()


def _compile(emu: EmulatorRoot, runtimes: tuple[str, ...], progress: Progress) -> None:
    """Byte-compile the stdlib and wheels with the host python (3.11 byte-code is the same on
    every arch) into the emulated python's pycache prefix: compiling under qemu is slow."""
    done = _marker(emu.cache, "pyc", WHEELS + runtimes)
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


_BASE_PROBE = (
    "import json, platform, numpy, pydantic, cryptography, edgefleet.sdk; "
    "print(json.dumps({'machine': platform.machine(), 'python': platform.python_version(), "
    "'numpy': numpy.__version__, 'pydantic': pydantic.__version__}))"
)


def _signal_name(code: int) -> str:
    import signal

    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _probe_runtimes(emu: EmulatorRoot, qemu: QemuBinary) -> tuple[dict, dict]:
    """Run each runtime's probe in its own emulated process: name -> version for those that
    run, name -> why for those that do not."""
    runs, fails = {}, {}
    for name in PROBES:
        argv = emu.command("-m", "edgefleet.hardware.hil._probe", name)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=emu.env(),
                                  timeout=600)  # fmt: skip
        except subprocess.TimeoutExpired:
            fails[name] = f"timed out after 600 s under qemu-aarch64 {qemu.version}"
            continue
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode == 0 and lines:
            runs[name] = json.loads(lines[-1])["version"]
            continue
        if proc.returncode < 0:
            why = f"crashed with {_signal_name(proc.returncode)}"
        else:
            tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
            why = f"failed (exit {proc.returncode}: {tail[0][:300]})"
        fails[name] = f"{name} {why} under qemu-aarch64 {qemu.version} (probe: relu model)"
    return runs, fails


def _choose_qemu(cache: Path, fetch_newer: bool, say: Progress) -> tuple[QemuBinary, str]:
    """Debian 13's qemu when apt can fetch it, else the system's (and why)."""
    if not fetch_newer:
        return system_qemu(), ""
    say("fetching qemu-user from Debian (apt-get download + dpkg -x)")
    try:
        return fetch_qemu(cache), ""
    except EmulatorError as e:
        log.warning("no newer qemu (%s); using the system's", e)
        return system_qemu(), str(e)


def prepare_emulator(
    cache: str | Path, progress: Progress | None = None, fetch_newer: bool = True
) -> EmulatorRoot:
    """Build (or reuse) the emulated aarch64 root in ``cache`` and measure which runtimes
    run in it. ``fetch_newer``: take qemu-user from Debian 13 (apt) instead of the system's."""
    say = progress or (lambda msg: log.info("%s", msg))
    emu = EmulatorRoot(Path(cache).resolve())
    emu.cache.mkdir(parents=True, exist_ok=True)
    qemu, fetch_error = _choose_qemu(emu.cache, fetch_newer, say)
    if not fetch_newer:
        shutil.rmtree(emu.cache / "qemu", ignore_errors=True)
    runtimes = emulated_wheels(qemu.major)
    _debs(emu.cache, say)
    _wheels(emu.cache, runtimes, say)
    _compile(emu, runtimes, say)
    _overlay(emu)
    if not emu.python.exists():
        raise EmulatorError(f"{emu.python} missing after unpacking the arm64 .debs")
    info_path = emu.cache / "emulator.json"
    key = hashlib.sha256("\n".join((qemu.source, qemu.version, *runtimes)).encode()).hexdigest()
    old = emu.info()
    if old.get("key") != key:
        say("checking the emulated python and which runtimes run under qemu")
        out = _run(emu.command("-c", _BASE_PROBE), "emulated python probe", env=emu.env(),
                   timeout=300)  # fmt: skip
        info = json.loads(out.stdout.strip().splitlines()[-1])
        runs, fails = _probe_runtimes(emu, qemu)
        info.update(
            key=key, qemu=f"qemu-aarch64 {qemu.version}", qemu_source=qemu.source,
            qemu_fetch_error=fetch_error, runtimes=runs, not_run=fails,
            emulated_runtimes=sorted(runs),
        )  # fmt: skip
        info.update(runs)  # "onnxruntime": "1.32.0", as the report and CLI read it
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
