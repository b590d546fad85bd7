"""Typed, frozen target profiles and their validation from parsed TOML.

Validation is written by hand rather than with pydantic so each message names the file and
the dotted field, says what was expected and what came.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._errors import ProfileError

__all__ = [
    "ARCHES",
    "BACKEND_OPTION_FIELDS",
    "Accelerator",
    "Budgets",
    "DetectRules",
    "Profile",
    "RuntimeChoice",
    "profile_from_dict",
]

log = logging.getLogger(__name__)

ARCHES = ("aarch64", "x86_64")
# Field names of the SDK's option dataclasses (sdk/backends/_base.py). Duplicated on purpose:
# this package may not import the SDK; a test keeps the two in step.
BACKEND_OPTION_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "onnxruntime": frozenset(
            {
                "providers",
                "intra_op_threads",
                "inter_op_threads",
                "graph_optimization",
                "tensorrt_fp16",
                "tensorrt_cache_dir",
            }
        ),  # fmt: skip
        "litert": frozenset({"num_threads", "delegates"}),
        "executorch": frozenset({"method"}),
        "torch": frozenset({"num_threads"}),
    }
)
_TUPLE_OPTIONS = {"providers", "delegates"}
_INT_OPTIONS = {"intra_op_threads", "inter_op_threads", "num_threads"}
_BOOL_OPTIONS = {"tensorrt_fp16"}
_GRAPH_LEVELS = ("disable", "basic", "extended", "all")
ACCELERATOR_KINDS = ("gpu", "npu", "dla", "tpu", "dsp")


@dataclass(frozen=True)
class Accelerator:
    """An accelerator on the board: its kind (one of ``ACCELERATOR_KINDS``), its name and,
    when published, its int8 TOPS."""

    kind: str
    name: str
    tops_int8: float | None = None


@dataclass(frozen=True)
class RuntimeChoice:
    """One runtime in a target's preference order; ``options`` are keyword arguments for the
    backend's option dataclass (e.g. ``OnnxRuntimeOptions(**choice.options)``)."""

    backend: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Budgets:
    """What a package must fit on this target: its size, the latency and the peak memory."""

    max_package_bytes: int
    # p95 latency for one batch-1 call of the reference models (tiny MLP/CNN on digits).
    p95_latency_ms: float
    peak_rss_mb: int


@dataclass(frozen=True)
class DetectRules:
    """How :func:`detect` recognises the board: patterns for the device-tree ``model`` and
    ``compatible`` strings, and the L4T releases a Jetson may report."""

    model_patterns: tuple[str, ...] = ()
    compatible_patterns: tuple[str, ...] = ()
    l4t_releases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Profile:
    """One hardware target, read from its TOML file (``source``): the board (architecture,
    cores, RAM, accelerators, SoC, CPU, OS), the runtimes in preference order, the budgets
    a package must fit and how :func:`detect` recognises it."""

    name: str
    display_name: str
    arch: str
    cores: int
    ram_mb: int
    accelerators: tuple[Accelerator, ...]
    runtimes: tuple[RuntimeChoice, ...]
    budgets: Budgets
    detect: DetectRules = DetectRules()
    soc: str = ""
    cpu: str = ""
    os: str = ""
    source: str = ""

    def runtime(self, backend: str) -> RuntimeChoice | None:
        """The entry for ``backend`` in this target's preference order, if listed."""
        return next((r for r in self.runtimes if r.backend == backend), None)

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(r.backend for r in self.runtimes)


class _Reader:
    """Pulls typed fields out of a TOML table, failing with ``file: field: expected X``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, expected: str, got: Any) -> ProfileError:
        return ProfileError(f"{self.source}: {where}: expected {expected}, got {got!r}")

    def table(self, data: Mapping[str, Any], key: str, where: str, default=None) -> Mapping:
        value = data.get(key, default)
        if not isinstance(value, Mapping):
            raise self.fail(where, "a table", value)
        return value

    def str_(self, data: Mapping[str, Any], key: str, where: str, default=None) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or (default is None and not value):
            raise self.fail(where, "a non-empty string", value)
        return value

    def int_(self, data: Mapping[str, Any], key: str, where: str, minimum: int = 1) -> int:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(where, f"an integer >= {minimum}", value)
        return value

    def float_(self, data: Mapping[str, Any], key: str, where: str) -> float:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.fail(where, "a positive number", value)
        return float(value)

    def strs(self, data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(where, "a list of non-empty strings", value)
        return tuple(value)

    def unknown(self, data: Mapping[str, Any], allowed: set[str], where: str) -> None:
        extra = sorted(set(data) - allowed)
        if extra:
            prefix = f"{where}." if where else ""
            raise self.fail(f"{prefix}{extra[0]}", f"one of {sorted(allowed)}", extra[0])


def _options(r: _Reader, backend: str, raw: Mapping[str, Any], where: str) -> Mapping:
    allowed = BACKEND_OPTION_FIELDS[backend]
    r.unknown(raw, set(allowed), where)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        here = f"{where}.{key}"
        if key in _TUPLE_OPTIONS:
            out[key] = r.strs(raw, key, here)
        elif key in _INT_OPTIONS:
            out[key] = r.int_(raw, key, here)
        elif key in _BOOL_OPTIONS:
            if not isinstance(value, bool):
                raise r.fail(here, "true or false", value)
            out[key] = value
        elif key == "graph_optimization":
            if value not in _GRAPH_LEVELS:
                raise r.fail(here, f"one of {list(_GRAPH_LEVELS)}", value)
            out[key] = value
        else:
            out[key] = r.str_(raw, key, here)
    return MappingProxyType(out)


def _runtimes(r: _Reader, data: Mapping[str, Any]) -> tuple[RuntimeChoice, ...]:
    raw = data.get("runtimes")
    if not isinstance(raw, list) or not raw:
        raise r.fail("runtimes", "a non-empty array of [[runtimes]] tables", raw)
    seen: set[str] = set()
    out = []
    for i, entry in enumerate(raw):
        where = f"runtimes[{i}]"
        if not isinstance(entry, Mapping):
            raise r.fail(where, "a table", entry)
        r.unknown(entry, {"backend", "options"}, where)
        backend = entry.get("backend")
        if backend not in BACKEND_OPTION_FIELDS:
            raise r.fail(f"{where}.backend", f"one of {sorted(BACKEND_OPTION_FIELDS)}", backend)
        if backend in seen:
            raise r.fail(f"{where}.backend", "each backend listed once", backend)
        seen.add(backend)
        opts = r.table(entry, "options", f"{where}.options", default={})
        out.append(RuntimeChoice(backend, _options(r, backend, opts, f"{where}.options")))
    return tuple(out)


def _accelerators(r: _Reader, data: Mapping[str, Any]) -> tuple[Accelerator, ...]:
    raw = data.get("accelerators", [])
    if not isinstance(raw, list):
        raise r.fail("accelerators", "an array of tables", raw)
    out = []
    for i, entry in enumerate(raw):
        where = f"accelerators[{i}]"
        if not isinstance(entry, Mapping):
            raise r.fail(where, "a table", entry)
        r.unknown(entry, {"kind", "name", "tops_int8"}, where)
        kind = entry.get("kind")
        if kind not in ACCELERATOR_KINDS:
            raise r.fail(f"{where}.kind", f"one of {list(ACCELERATOR_KINDS)}", kind)
        tops = r.float_(entry, "tops_int8", f"{where}.tops_int8") if "tops_int8" in entry else None
        out.append(Accelerator(kind, r.str_(entry, "name", f"{where}.name"), tops))
    return tuple(out)


_TOP = {
    "name", "display_name", "arch", "cores", "ram_mb", "soc", "cpu", "os",
    "accelerators", "runtimes", "budgets", "detect",
}  # fmt: skip


def profile_from_dict(data: Mapping[str, Any], source: str) -> Profile:
    """Validate one parsed profile; ``source`` (the file name) prefixes every error."""
    r = _Reader(source)
    r.unknown(data, _TOP, "")
    arch = data.get("arch")
    if arch not in ARCHES:
        raise r.fail("arch", f"one of {list(ARCHES)}", arch)
    b = r.table(data, "budgets", "budgets")
    r.unknown(b, {"max_package_bytes", "p95_latency_ms", "peak_rss_mb"}, "budgets")
    budgets = Budgets(
        max_package_bytes=r.int_(b, "max_package_bytes", "budgets.max_package_bytes"),
        p95_latency_ms=r.float_(b, "p95_latency_ms", "budgets.p95_latency_ms"),
        peak_rss_mb=r.int_(b, "peak_rss_mb", "budgets.peak_rss_mb"),
    )
    d = r.table(data, "detect", "detect", default={})
    r.unknown(d, {"model_patterns", "compatible_patterns", "l4t_releases"}, "detect")
    detect = DetectRules(
        model_patterns=r.strs(d, "model_patterns", "detect.model_patterns"),
        compatible_patterns=r.strs(d, "compatible_patterns", "detect.compatible_patterns"),
        l4t_releases=r.strs(d, "l4t_releases", "detect.l4t_releases"),
    )
    name = r.str_(data, "name", "name")
    return Profile(
        name=name,
        display_name=r.str_(data, "display_name", "display_name", default=name),
        arch=arch,
        cores=r.int_(data, "cores", "cores"),
        ram_mb=r.int_(data, "ram_mb", "ram_mb", minimum=64),
        accelerators=_accelerators(r, data),
        runtimes=_runtimes(r, data),
        budgets=budgets,
        detect=detect,
        soc=r.str_(data, "soc", "soc", default=""),
        cpu=r.str_(data, "cpu", "cpu", default=""),
        os=r.str_(data, "os", "os", default=""),
        source=source,
    )
