"""What this device is: hardware profile, runtimes, RAM, disk, accelerators.

Detection goes through ``edgefleet.hardware.profiles`` (Jetson via /etc/nv_tegra_release and
the device tree, Raspberry Pi via /proc/device-tree/model, RK3588, x86_64).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import shutil
from pathlib import Path

from edgefleet.sdk.protocol import Inventory

__all__ = ["AGENT_VERSION", "detect_profile_name", "installed_runtimes", "build_inventory"]

log = logging.getLogger(__name__)

try:
    AGENT_VERSION = importlib.metadata.version("edgefleet")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    AGENT_VERSION = "0+unknown"

_RUNTIMES = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "litert": ("ai-edge-litert", "tflite-runtime"),
    "executorch": ("executorch",),
}


def detect_profile(name: str | None = None):
    """The hardware profile object: ``name`` if given, else detected on this machine."""
    from edgefleet.hardware.profiles import detect_profile as _detect
    from edgefleet.hardware.profiles import get_profile

    return get_profile(name) if name else _detect()


def detect_profile_name(name: str | None = None) -> str | None:
    try:
        return detect_profile(name).name
    except Exception as e:  # detection must never stop the agent from coming online
        log.warning("hardware profile detection failed: %s", e)
        return name


def installed_runtimes() -> dict[str, str]:
    """Runtime -> version, from installed distributions (no runtime is imported)."""
    found = {}
    for runtime, dists in _RUNTIMES.items():
        for dist in dists:
            try:
                found[runtime] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return found


def _ram_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        return 0


def build_inventory(
    device_id: str,
    data_dir: Path,
    profile_name: str | None = None,
    tags: list[str] = (),
    windows: list = (),
) -> Inventory:
    model = ""
    accelerators: list[str] = []
    try:
        prof = detect_profile(profile_name)
        name = prof.name
        accelerators = [f"{a.kind}:{a.name}" for a in prof.accelerators]
        model = prof.display_name if profile_name else _board_model() or prof.display_name
    except Exception as e:
        log.warning("hardware profile detection failed: %s", e)
        name = profile_name or "unknown"
    data_dir.mkdir(parents=True, exist_ok=True)
    return Inventory(
        device_id=device_id,
        profile=name,
        arch=platform.machine(),
        model=model,
        os=f"{platform.system()} {platform.release()}",
        cpu_count=os.cpu_count() or 1,
        ram_mb=_ram_mb(),
        disk_free_mb=shutil.disk_usage(data_dir).free // 2**20,
        accelerators=accelerators,
        runtimes=installed_runtimes(),
        agent_version=AGENT_VERSION,
        tags=list(tags),
        maintenance_windows=list(windows),
    )


def _board_model() -> str:
    try:
        return Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return ""
