"""What the device has left: memory, memory pressure, temperature and CPU load, and a
policy with hysteresis that turns samples into a level (normal / constrained / critical).

Everything is read under a ``root`` (``/`` on a device) so tests drive fake sysfs/procfs
trees. Sources, first found wins for memory: the cgroup v2 of this process
(``memory.current``/``memory.max``), cgroup v1 (``memory.usage_in_bytes``/
``memory.limit_in_bytes``), an address-space cap on this process (RLIMIT_AS, live root
only), then ``/proc/meminfo``. Pressure is PSI ``memory.pressure`` (the cgroup's, else
``/proc/pressure/memory``) when the kernel has it. Nothing here reacts; the agent does.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ._errors import ConfigError

__all__ = [
    "RESOURCE_LEVELS",
    "ResourcePolicy",
    "ResourceSample",
    "ResourceTracker",
    "read_resources",
]

log = logging.getLogger(__name__)

RESOURCE_LEVELS = ("normal", "constrained", "critical")
_UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as a huge page-aligned number


@dataclass(frozen=True)
class ResourceSample:
    # Fraction of the memory this process may use that is in use (None: unknown).
    memory_used: float | None = None
    memory_limit_mb: float | None = None
    memory_source: str = ""
    # PSI "some avg10": % of the last 10 s in which some task stalled on memory.
    memory_pressure: float | None = None
    temperature_c: float | None = None
    # 1-minute load average per CPU.
    load_per_cpu: float | None = None
    ts: float = field(default_factory=time.monotonic)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    if text is None or text.strip() == "max":
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _cgroup_dir(root: Path) -> Path:
    """This process's cgroup v2 directory (``0::/path`` in /proc/self/cgroup)."""
    text = _read(root / "proc/self/cgroup") or ""
    m = re.search(r"^0::(/\S*)$", text, re.M)
    return root / "sys/fs/cgroup" / (m.group(1).lstrip("/") if m else "")


def _memory(root: Path, live: bool) -> tuple[float | None, float | None, str]:
    cg = _cgroup_dir(root)
    used, limit = _int(cg / "memory.current"), _int(cg / "memory.max")
    if used is not None and limit:
        return used / limit, limit / 2**20, "cgroup v2"
    v1 = root / "sys/fs/cgroup/memory"
    used, limit = _int(v1 / "memory.usage_in_bytes"), _int(v1 / "memory.limit_in_bytes")
    if used is not None and limit and limit < _UNLIMITED:
        return used / limit, limit / 2**20, "cgroup v1"
    if live:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        status = _read(root / "proc/self/status") or ""
        m = re.search(r"^VmSize:\s+(\d+) kB", status, re.M)
        if soft != resource.RLIM_INFINITY and m:
            return int(m.group(1)) * 1024 / soft, soft / 2**20, "address-space cap"
    info = _read(root / "proc/meminfo") or ""
    total = re.search(r"^MemTotal:\s+(\d+) kB", info, re.M)
    avail = re.search(r"^MemAvailable:\s+(\d+) kB", info, re.M)
    if total and avail and int(total.group(1)):
        t, a = int(total.group(1)), int(avail.group(1))
        return (t - a) / t, t / 1024, "meminfo"
    return None, None, ""


def _pressure(root: Path) -> float | None:
    for path in (_cgroup_dir(root) / "memory.pressure", root / "proc/pressure/memory"):
        text = _read(path)
        m = re.search(r"^some avg10=([\d.]+)", text or "", re.M)
        if m:
            return float(m.group(1))
    return None


def _temperature(root: Path) -> float | None:
    """The hottest thermal zone, in °C (sysfs gives millidegrees)."""
    temps = []
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*/temp")):
        value = _int(zone)
        if value is not None and -40_000 < value < 150_000:
            temps.append(value / 1000.0)
    return round(max(temps), 1) if temps else None


def _load(root: Path) -> float | None:
    text = _read(root / "proc/loadavg")
    if not text:
        return None
    cpus = len(re.findall(r"^processor\s*:", _read(root / "proc/cpuinfo") or "", re.M))
    cpus = cpus or os.cpu_count() or 1
    try:
        return round(float(text.split()[0]) / cpus, 3)
    except (ValueError, IndexError):
        return None


def read_resources(root: str | Path = "/") -> ResourceSample:
    """One sample of the device's resources under ``root``."""
    root = Path(root)
    live = root.resolve() == Path("/")
    used, limit, source = _memory(root, live)
    return ResourceSample(
        memory_used=None if used is None else round(used, 4),
        memory_limit_mb=None if limit is None else round(limit, 1),
        memory_source=source,
        memory_pressure=_pressure(root),
        temperature_c=_temperature(root),
        load_per_cpu=_load(root),
    )


@dataclass(frozen=True)
class ResourcePolicy:
    """Thresholds: a level is entered above ``*_high`` (critical above ``*_critical``) and
    left only after every figure stayed below its ``*_low`` for ``calm_s`` (hysteresis, so
    a figure hovering at a threshold does not flap)."""

    memory_high: float = 0.85
    memory_low: float = 0.70
    memory_critical: float = 0.95
    pressure_high: float = 10.0
    pressure_low: float = 2.0
    pressure_critical: float = 40.0
    temp_high_c: float = 80.0
    temp_low_c: float = 70.0
    temp_critical_c: float = 90.0
    load_high: float = 2.0
    load_low: float = 1.2
    calm_s: float = 3.0

    def __post_init__(self) -> None:
        pairs = [
            ("memory", self.memory_low, self.memory_high, self.memory_critical),
            ("pressure", self.pressure_low, self.pressure_high, self.pressure_critical),
            ("temp", self.temp_low_c, self.temp_high_c, self.temp_critical_c),
        ]
        for name, low, high, crit in pairs:
            if not low < high <= crit:
                raise ConfigError(
                    f"resource policy {name}: expected low < high <= critical, "
                    f"got {low}, {high}, {crit}"
                )
        if not self.load_low < self.load_high or self.calm_s < 0:
            raise ConfigError(
                "resource policy: expected load_low < load_high and calm_s >= 0, got "
                f"{self.load_low}, {self.load_high}, {self.calm_s}"
            )

    def assess(self, s: ResourceSample) -> tuple[int, bool, list[str]]:
        """(level the sample asks for, whether it is calm, reasons)."""
        checks = [
            ("memory", s.memory_used, self.memory_low, self.memory_high, self.memory_critical),
            ("memory pressure", s.memory_pressure, self.pressure_low, self.pressure_high,
             self.pressure_critical),
            ("temperature", s.temperature_c, self.temp_low_c, self.temp_high_c,
             self.temp_critical_c),
            ("cpu load", s.load_per_cpu, self.load_low, self.load_high, None),
        ]  # fmt: skip
        level, calm, reasons = 0, True, []
        for name, value, low, high, crit in checks:
            if value is None:
                continue
            if crit is not None and value >= crit:
                level = 2
                reasons.append(f"{name} {value:g} >= critical {crit:g}")
            elif value >= high:
                level = max(level, 1)
                reasons.append(f"{name} {value:g} >= {high:g}")
            if value >= low:
                calm = False
        return level, calm, reasons


class ResourceTracker:
    """Feeds samples through a policy: raises the level at once; lowers it only after
    ``calm_s`` of samples that allow a lower level (back to normal needs every figure below
    its low mark). Not thread-safe; one watcher thread owns it."""

    def __init__(self, policy: ResourcePolicy = ResourcePolicy()) -> None:
        self.policy = policy
        self.level = 0
        self.reasons: list[str] = []
        self._lower_since: float | None = None

    def update(self, sample: ResourceSample) -> bool:
        """Take a sample; True when the level changed."""
        wanted, calm, reasons = self.policy.assess(sample)
        before = self.level
        # Between the low and high marks (not calm, nothing high): hold a constrained level.
        target = 0 if calm else max(wanted, min(self.level, 1))
        if reasons:
            self.reasons = reasons
        if target > self.level:
            self.level, self._lower_since = target, None
        elif target < self.level:
            if self._lower_since is None:
                self._lower_since = sample.ts
            if sample.ts - self._lower_since >= self.policy.calm_s:
                self.level, self._lower_since = target, None
                if target == 0:
                    self.reasons = []
        else:
            self._lower_since = None
        return self.level != before
