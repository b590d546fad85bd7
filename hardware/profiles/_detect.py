"""Which target are we running on? Reads the files a board exposes, under a ``root`` so
tests can point it at recorded samples instead of the live ``/``."""

from __future__ import annotations

import logging
import platform
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ._catalog import get_profile, list_profiles
from ._errors import ProfileError
from ._profile import Profile

__all__ = ["BoardFacts", "Detection", "detect", "detect_profile", "normalize_arch", "read_facts"]

log = logging.getLogger(__name__)

# Arm "CPU part" ids (MIDR) of the cores on our targets, for boards without a usable model.
_PART_A55, _PART_A72, _PART_A76, _PART_A78AE = "0xd05", "0xd08", "0xd0b", "0xd42"
_IMPL_NVIDIA = "0x4e"  # Carmel cores (Xavier) report NVIDIA as implementer
GENERIC_ARM64 = "rockchip-rk3588"
GENERIC_X86 = "x86_64-cpu"


@dataclass(frozen=True)
class BoardFacts:
    """What the board says about itself (empty strings where a file is missing)."""

    model: str = ""
    compatible: tuple[str, ...] = ()
    l4t_release: str = ""
    arch: str = ""
    cpu_count: int = 0
    cpu_parts: tuple[str, ...] = ()
    cpu_implementers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Detection:
    """What :func:`detect` decided: the profile, how and on what evidence, and whether it is
    exact or a guess."""

    profile: Profile
    # How it was decided ("device-tree model", "cpu parts", "architecture fallback", ...).
    method: str
    evidence: str
    # False when we fell back to a generic profile for the architecture.
    exact: bool
    facts: BoardFacts
    # Why this answer is a guess ("" when the board identified itself).
    guess: str = ""


def normalize_arch(machine: str) -> str:
    """``platform.machine()`` spellings -> our profile arch names (arm64 -> aarch64)."""
    m = machine.strip().lower()
    return {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}.get(m, m)


def _is_live(root: str | Path) -> bool:
    return Path(root).resolve() == Path("/")


def _read(path: Path) -> str:
    try:
        # Device-tree strings end in NUL; compatible is a NUL-separated list.
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


def _cpuinfo_arch(text: str) -> str:
    if re.search(r"^vendor_id\s*:", text, re.M) or re.search(r"^flags\s*:.*\blm\b", text, re.M):
        return "x86_64"
    if re.search(r"^CPU architecture\s*:\s*8", text, re.M):
        return "aarch64"
    return ""


def read_facts(root: str | Path = "/") -> BoardFacts:
    root = Path(root)
    model = _read(root / "proc/device-tree/model") or _read(
        root / "sys/firmware/devicetree/base/model"
    )
    model = model.replace("\x00", "").strip()
    compatible = tuple(
        c for c in _read(root / "proc/device-tree/compatible").split("\x00") if c.strip()
    )
    tegra = _read(root / "etc/nv_tegra_release")
    m = re.search(r"#\s*(R\d+)", tegra)
    l4t = m.group(1) if m else ("R?" if tegra.strip() else "")
    cpuinfo = _read(root / "proc/cpuinfo")
    if not model:
        # A Pi without a device tree mounted still names itself in cpuinfo.
        m = re.search(r"^Model\s*:\s*(.+)$", cpuinfo, re.M)
        model = m.group(1).strip() if m else ""
    arch = _cpuinfo_arch(cpuinfo)
    if not arch and _is_live(root):
        arch = normalize_arch(platform.machine())
    return BoardFacts(
        model=model,
        compatible=compatible,
        l4t_release=l4t,
        arch=arch,
        cpu_count=len(re.findall(r"^processor\s*:", cpuinfo, re.M)),
        cpu_parts=tuple(re.findall(r"^CPU part\s*:\s*(0x[0-9a-fA-F]+)", cpuinfo, re.M)),
        cpu_implementers=tuple(
            re.findall(r"^CPU implementer\s*:\s*(0x[0-9a-fA-F]+)", cpuinfo, re.M)
        ),
    )


def _by_patterns(facts: BoardFacts) -> Detection | None:
    model = facts.model.lower()
    compat = [c.lower() for c in facts.compatible]
    for p in list_profiles():
        if facts.arch and p.arch != facts.arch:
            continue  # e.g. an x86 host's DMI name cannot make an aarch64 process a Jetson
        for pat in p.detect.model_patterns:
            if model and pat.lower() in model:
                return Detection(p, "device-tree model", facts.model, True, facts)
        for pat in p.detect.compatible_patterns:
            if any(pat.lower() in c for c in compat):
                return Detection(
                    p, "device-tree compatible", ",".join(facts.compatible), True, facts
                )
    return None


def _by_cpu(facts: BoardFacts) -> Detection | None:
    parts, n = set(facts.cpu_parts), facts.cpu_count
    ev = f"{n} cpus, parts {sorted(parts)}"
    if facts.l4t_release:
        if _IMPL_NVIDIA in facts.cpu_implementers:
            return Detection(get_profile("jetson-xavier-nx"), "l4t + cpu parts", ev, True, facts)
        if _PART_A78AE in parts:
            return Detection(get_profile("jetson-orin-nano"), "l4t + cpu parts", ev, True, facts)
    if parts == {_PART_A55, _PART_A76} and n == 8:
        return Detection(get_profile("rockchip-rk3588"), "cpu parts", ev, True, facts)
    if parts == {_PART_A72} and n == 4:
        return Detection(get_profile("raspberry-pi-4"), "cpu parts", ev, True, facts)
    if parts == {_PART_A76} and n == 4:
        return Detection(get_profile("raspberry-pi-5"), "cpu parts", ev, True, facts)
    return None


def _cross_check(facts: BoardFacts, machine: str) -> tuple[BoardFacts, str]:
    """Trust the architecture this process runs on over ``/proc/cpuinfo``.

    qemu-user (and so an arm64 container on an x86 host) passes the host's cpuinfo through:
    it then describes a CPU this process is not running on, so its arch and cpu parts are
    dropped and only the running architecture is kept.
    """
    running = normalize_arch(machine)
    if not running or not facts.arch or running == facts.arch:
        return (replace(facts, arch=facts.arch or running), "")
    note = (
        f"/proc/cpuinfo describes an {facts.arch} CPU but this process runs {running} "
        "(qemu-user emulation or a foreign-arch container passes the host's cpuinfo "
        "through), so the board's CPU cannot be read"
    )
    return replace(facts, arch=running, cpu_count=0, cpu_parts=(), cpu_implementers=()), note


def detect(root: str | Path = "/", machine: str | None = None) -> Detection:
    """Detect the target under ``root``, saying how, on what evidence, and when it is a guess.

    ``machine`` is the architecture this process runs (``platform.machine()``); it defaults to
    the live value when ``root`` is ``/`` and is not used for a recorded root unless given.
    """
    facts = read_facts(root)
    if machine is None and _is_live(root):
        machine = platform.machine()
    facts, mismatch = _cross_check(facts, machine or "")
    found = _by_patterns(facts) or _by_cpu(facts)
    if found is not None:
        log.debug("detected %s by %s (%s)", found.profile.name, found.method, found.evidence)
        return found
    generic = {"aarch64": GENERIC_ARM64, "x86_64": GENERIC_X86}.get(facts.arch)
    if generic is None:
        raise ProfileError(
            f"cannot detect a target profile under {root}: expected an aarch64 or x86_64 "
            f"board, got arch {facts.arch or 'unknown'!r} and model {facts.model or 'none'!r}"
        )
    exact = generic == GENERIC_X86 and not facts.l4t_release and not mismatch
    guess = ""
    if mismatch:
        guess = f"{mismatch}; using the generic {facts.arch} profile {generic}"
    elif not exact:
        guess = (f"unknown {facts.arch} board {facts.model or '(no model string)'!r}: "
                 f"using the generic profile {generic}")  # fmt: skip
    if guess:
        log.warning("hardware detection is a guess: %s", guess)
    evidence = f"{facts.arch} ({'running arch' if mismatch else 'cpuinfo'})"
    return Detection(get_profile(generic), "architecture fallback", evidence, exact, facts, guess)


def detect_profile(root: str | Path = "/", machine: str | None = None) -> Profile:
    """The profile of the board under ``root`` (``/`` = this machine)."""
    return detect(root, machine).profile
