"""A newer qemu-user for the emulated cells, taken from a newer Debian release with apt.

Debian 12's qemu 7.2 crashes current ONNX Runtime and LiteRT (measured: SIGSEGV at import or
when the interpreter is created); Debian 13's qemu 10.0 runs both. Its ``qemu-user`` package
ships static binaries, so ``apt-get download`` + ``dpkg -x`` into the cache is enough: nothing
is installed and the system's apt configuration is left alone (a private apt directory holds
the extra release's sources and lists).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from ._errors import EmulatorError

__all__ = ["QEMU_RELEASE", "QemuBinary", "fetch_qemu", "system_qemu"]

log = logging.getLogger(__name__)

SYSTEM_QEMU = "qemu-aarch64-static"
QEMU_RELEASE = "trixie"  # Debian 13: qemu 10.0
_MIRROR = "http://deb.debian.org/debian"
_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


@dataclass(frozen=True)
class QemuBinary:
    path: Path
    version: str  # "10.0.13"
    source: str  # where it came from, for the report

    @property
    def major(self) -> int:
        m = re.match(r"(\d+)", self.version)
        return int(m.group(1)) if m else 0


def _version(binary: str | Path) -> str:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             timeout=30).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        raise EmulatorError(f"cannot run {binary} --version: {e}") from e
    m = re.search(r"version (\d+\.\d+(?:\.\d+)?)", out)
    if not m:
        raise EmulatorError(f"{binary} --version said {out.strip()[:200]!r}: no version in it")
    return m.group(1)


def system_qemu() -> QemuBinary:
    found = shutil.which(SYSTEM_QEMU)
    if not found:
        raise EmulatorError(
            f"{SYSTEM_QEMU} not found; install it: apt-get install -y qemu-user-static"
        )
    return QemuBinary(Path(found), _version(found), f"system {found}")


def _apt(apt_dir: Path, *args: str, cwd: Path | None = None) -> str:
    host = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True)
    arch = host.stdout.strip() or "amd64"
    opts = [
        f"Dir::Etc::sourcelist={apt_dir / 'sources.list'}",
        f"Dir::Etc::sourceparts={apt_dir / 'sources.list.d'}",
        f"Dir::Etc::preferencesparts={apt_dir / 'preferences.d'}",
        f"Dir::State::Lists={apt_dir / 'lists'}",
        f"Dir::Cache={apt_dir / 'cache'}",
        f"APT::Architecture={arch}",
        f"APT::Architectures::={arch}",
        # Downloads land in our own (maybe root-owned) cache: no _apt sandbox user needed.
        "APT::Sandbox::User=root",
    ]
    cmd = ["apt-get", "-q"] + [x for o in opts for x in ("-o", o)] + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-800:]
        raise EmulatorError(f"apt-get {args[0]} ({QEMU_RELEASE}) failed: {tail}")
    return proc.stdout


def fetch_qemu(cache: Path, release: str = QEMU_RELEASE) -> QemuBinary:
    """``qemu-aarch64`` from Debian ``release``'s qemu-user package, unpacked under
    ``cache/qemu``; reused when already there."""
    root = cache / "qemu"
    binary = root / "usr/bin/qemu-aarch64"
    marker = root / ".source"
    if binary.exists() and marker.exists():
        return QemuBinary(binary, _version(binary), marker.read_text().strip())
    if not Path(_KEYRING).exists():
        raise EmulatorError(f"{_KEYRING} missing: cannot verify Debian {release} packages")
    apt_dir = cache / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    (apt_dir / "sources.list").write_text(f"deb [signed-by={_KEYRING}] {_MIRROR} {release} main\n")
    _apt(apt_dir, "update")
    debs = apt_dir / "debs"
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir()
    _apt(apt_dir, "download", f"qemu-user/{release}", cwd=debs)
    found = sorted(debs.glob("qemu-user_*.deb"))
    if not found:
        raise EmulatorError(f"apt-get download qemu-user/{release} left no .deb in {debs}")
    tmp = cache / "qemu.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    proc = subprocess.run(["dpkg", "-x", str(found[0]), str(tmp)], capture_output=True, text=True)
    if proc.returncode != 0 or not (tmp / "usr/bin/qemu-aarch64").exists():
        raise EmulatorError(f"dpkg -x {found[0].name} gave no usr/bin/qemu-aarch64: "
                            f"{proc.stderr.strip()[-400:]}")  # fmt: skip
    # Keep only the one binary we run (the package unpacks ~40 emulators, 300+ MB).
    keep = tmp / "usr/bin/qemu-aarch64"
    shutil.rmtree(root, ignore_errors=True)
    (root / "usr/bin").mkdir(parents=True)
    keep.rename(binary)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(debs, ignore_errors=True)
    source = f"Debian {release} {unquote(found[0].name)}"
    marker.write_text(source)
    log.info("using %s", source)
    return QemuBinary(binary, _version(binary), source)
