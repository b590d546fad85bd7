"""The matrix to run: targets x runtimes x packages x checks, and how each target is run.

Read from a TOML matrix file and/or command-line selections; every name is checked against
the bundled profiles and backends so a typo fails before any cell runs.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgefleet.hardware import profiles

from ._errors import MatrixError
from ._results import CHECKS

__all__ = ["EXECUTORS", "MatrixSpec", "default_executors", "host_arch", "load_matrix"]

log = logging.getLogger(__name__)

EXECUTORS = ("local", "limited", "emulated", "fleet")
RUNTIMES = ("onnxruntime", "litert", "executorch", "torch")
_BUDGET_KEYS = ("max_package_bytes", "p95_latency_ms", "peak_rss_mb")


def host_arch() -> str:
    return profiles.normalize_arch(platform.machine())


def default_executors(target: str) -> tuple[str, ...]:
    """The host runs its own arch's generic target as is; a board of the host's arch with
    its limits; a foreign-arch board both mimicked (limits) and emulated (qemu)."""
    profile = profiles.get_profile(target)
    if profile.arch == host_arch():
        return ("local",) if target in ("x86_64-cpu",) else ("limited",)
    return ("limited", "emulated")


@dataclass(frozen=True)
class MatrixSpec:
    packages: tuple[Path, ...] = ()
    targets: tuple[str, ...] = ("x86_64-cpu",)
    # Empty: each target's own runtime preference list.
    runtimes: tuple[str, ...] = ()
    checks: tuple[str, ...] = CHECKS
    # target -> executors; a target missing here gets default_executors(target).
    executors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # target -> budget overrides (e.g. a tighter peak_rss_mb for a small board variant).
    budgets: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    latency_runs: int = 50
    timeout_s: float = 300.0
    emulator_cache: Path | None = None
    trusted_keys: tuple[Path, ...] = ()
    # The fleet executor: the fleet's MQTT broker, the key that signs commands (the devices
    # trust its public half), and how long to collect retained inventories.
    broker_url: str = ""
    broker_username: str | None = None
    broker_password: str | None = None
    command_key: Path | None = None
    fleet_wait_s: float = 1.0
    # Only these device ids (empty: every online device of the target's profile).
    fleet_devices: tuple[str, ...] = ()

    def executors_for(self, target: str) -> tuple[str, ...]:
        return tuple(self.executors.get(target) or default_executors(target))

    def runtimes_for(self, target: str) -> tuple[str, ...]:
        return self.runtimes or profiles.get_profile(target).backends

    def budgets_for(self, target: str) -> dict[str, float]:
        b = profiles.get_profile(target).budgets
        out = {k: getattr(b, k) for k in _BUDGET_KEYS}
        out.update(self.budgets.get(target, {}))
        return out

    def validate(self, source: str = "matrix") -> MatrixSpec:
        known = profiles.profile_names()

        def fail(where: str, expected: str, got: Any) -> MatrixError:
            return MatrixError(f"{source}: {where}: expected {expected}, got {got!r}")

        fleet_only = all(self.executors_for(t) == ("fleet",) for t in self.targets if t in known)
        if not self.packages and not fleet_only:
            raise fail("packages", "at least one package path", list(self.packages))
        for p in self.packages:
            if not Path(p).exists():
                raise fail("packages", "existing package files or directories", str(p))
        for t in self.targets:
            if t not in known:
                raise fail("targets", f"profile names from {known}", t)
        for r in self.runtimes:
            if r not in RUNTIMES:
                raise fail("runtimes", f"names from {list(RUNTIMES)}", r)
        for c in self.checks:
            if c not in CHECKS:
                raise fail("checks", f"names from {list(CHECKS)}", c)
        for t, ex in self.executors.items():
            if t not in known:
                raise fail(f"executors.{t}", f"a profile name from {known}", t)
            for e in ex:
                if e not in EXECUTORS:
                    raise fail(f"executors.{t}", f"names from {list(EXECUTORS)}", e)
        for t, b in self.budgets.items():
            if t not in known:
                raise fail(f"budgets.{t}", f"a profile name from {known}", t)
            for k, v in b.items():
                if k not in _BUDGET_KEYS:
                    raise fail(f"budgets.{t}.{k}", f"one of {list(_BUDGET_KEYS)}", k)
                if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                    raise fail(f"budgets.{t}.{k}", "a positive number", v)
        if self.latency_runs < 1 or self.timeout_s <= 0:
            raise fail("latency_runs/timeout_s", "positive values",
                       (self.latency_runs, self.timeout_s))  # fmt: skip
        return self


def _strs(data: Mapping[str, Any], key: str, source: str) -> tuple[str, ...]:
    v = data.get(key, [])
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise MatrixError(f"{source}: {key}: expected a list of strings, got {v!r}")
    return tuple(v)


_KEYS = {
    "packages", "targets", "runtimes", "checks", "executors", "budgets", "latency_runs",
    "timeout_s", "emulator_cache", "trusted_keys", "broker_url", "broker_username",
    "broker_password", "command_key", "fleet_wait_s", "fleet_devices",
}  # fmt: skip


def load_matrix(path: str | Path, **overrides: Any) -> MatrixSpec:
    """Read a matrix TOML file; relative paths are relative to the file. Keyword
    ``overrides`` (from the command line) replace the file's values when not empty."""
    path = Path(path)
    source = path.name
    data = profiles.read_toml(path, "matrix", MatrixError)
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise MatrixError(f"{source}: {unknown[0]}: expected one of {sorted(_KEYS)}")
    base = path.parent

    def rel(p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else base / q

    executors = data.get("executors", {})
    budgets = data.get("budgets", {})
    if not isinstance(executors, dict) or not isinstance(budgets, dict):
        raise MatrixError(f"{source}: executors/budgets: expected tables")
    try:
        spec = MatrixSpec(
            packages=tuple(rel(p) for p in _strs(data, "packages", source)),
            targets=_strs(data, "targets", source) or ("x86_64-cpu",),
            runtimes=_strs(data, "runtimes", source),
            checks=_strs(data, "checks", source) or CHECKS,
            executors={t: _strs(executors, t, f"{source}: executors") for t in executors},
            budgets={t: dict(b) for t, b in budgets.items()},
            latency_runs=int(data.get("latency_runs", 50)),
            timeout_s=float(data.get("timeout_s", 300.0)),
            emulator_cache=rel(data["emulator_cache"]) if data.get("emulator_cache") else None,
            trusted_keys=tuple(rel(p) for p in _strs(data, "trusted_keys", source)),
            broker_url=str(data.get("broker_url", "")),
            broker_username=data.get("broker_username"),
            broker_password=data.get("broker_password"),
            command_key=rel(data["command_key"]) if data.get("command_key") else None,
            fleet_wait_s=float(data.get("fleet_wait_s", 1.0)),
            fleet_devices=_strs(data, "fleet_devices", source),
        )
    except (TypeError, ValueError, AttributeError) as e:
        if isinstance(e, MatrixError):
            raise
        raise MatrixError(f"{source}: {e}") from e
    spec = replace(spec, **{k: v for k, v in overrides.items() if v})
    try:
        return spec.validate(source)
    except profiles.ProfileError as e:
        raise MatrixError(str(e)) from e
