"""Choosing an artifact and a backend from the package, the installed runtimes and a
target profile's preference order."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from ._errors import BackendUnavailableError, ConfigError
from ._manifest import Artifact, Manifest
from .backends import EXTRAS, Backend, BackendOptions, get_backend

__all__ = ["Choice", "DEFAULT_ORDER", "choose", "profile_runtimes", "resolve_profile"]

log = logging.getLogger(__name__)

DEFAULT_ORDER = ("onnxruntime", "litert", "executorch", "torch")
_PRECISION_ORDER = ("int8", "fp16", "fp32")


@dataclass(frozen=True)
class Choice:
    backend: Backend
    artifact: Artifact
    options: BackendOptions | None


def _to_options(backend: Backend, raw: dict[str, Any]) -> BackendOptions:
    cls = backend.options_type
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown {backend.name} options {unknown}; expected {sorted(names)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def profile_runtimes(profile: object | None) -> list[tuple[str, dict[str, Any]]]:
    """(backend name, options dict) in the profile's preference order."""
    if profile is None:
        return [(name, {}) for name in DEFAULT_ORDER]
    return [(r.backend, dict(r.options)) for r in profile.runtimes]


def _precision_rank(a: Artifact, prefer: str | None, gpu: bool = True) -> tuple[int, int]:
    # fp16 pays only on a GPU; on a CPU it is cast back or emulated, so it ranks last there
    # unless asked for by name.
    cpu_fp16 = a.precision == "fp16" and not gpu and prefer != "fp16"
    order = _PRECISION_ORDER if prefer is None else (prefer, *_PRECISION_ORDER)
    return (int(cpu_fp16), order.index(a.precision) if a.precision in order else len(order))


_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _has_gpu(backend: str, options: BackendOptions | None) -> bool:
    """Whether ``backend`` will run on a GPU here (ONNX Runtime with TensorRT/CUDA only)."""
    if backend != "onnxruntime":
        return False
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    wanted = getattr(options, "providers", None) or _GPU_PROVIDERS
    return any(p in have for p in wanted if p in _GPU_PROVIDERS)


def choose(
    manifest: Manifest,
    *,
    backend: str | None,
    artifact: str | None,
    precision: str | None,
    profile: object | None,
    options: dict[str, BackendOptions | None],
) -> Choice:
    """Pick (backend, artifact, options). Explicit ``options[backend]`` win over the
    profile's options for that backend."""
    candidates = list(manifest.artifacts)
    if artifact is not None:
        candidates = [a for a in candidates if a.name == artifact]
        if not candidates:
            raise ConfigError(
                f"package has no artifact {artifact!r}; it has "
                f"{[a.name for a in manifest.artifacts]}"
            )
    pname = getattr(profile, "name", None)
    if pname is not None and artifact is None:
        suited = [a for a in candidates if not a.targets or pname in a.targets]
        candidates = suited or candidates
    if not candidates:
        raise BackendUnavailableError(f"package {manifest.name} has no artifacts")

    runtimes = profile_runtimes(profile)
    if backend is not None:
        runtimes = [(n, o) for n, o in runtimes if n == backend] or [(backend, {})]
    reasons: list[str] = []
    for name, raw in runtimes:
        b = get_backend(name)
        usable = [a for a in candidates if a.format in b.formats]
        if not usable:
            reasons.append(f"{name}: no artifact in formats {list(b.formats)}")
            continue
        why = b.available()
        if why is not None:
            reasons.append(f"{name}: {why}")
            continue
        opts = options.get(name) or (_to_options(b, raw) if raw else None)
        gpu = any(a.precision == "fp16" for a in usable) and _has_gpu(name, opts)
        best = sorted(usable, key=lambda a: _precision_rank(a, precision, gpu))[0]
        log.debug("chose %s with artifact %s", name, best.name)
        return Choice(backend=b, artifact=best, options=opts)
    formats = sorted({a.format for a in candidates})
    hint = ", ".join(
        f"'{EXTRAS[n]}'" for n, _ in runtimes if n in EXTRAS and EXTRAS[n] != "edgefleet"
    )
    raise BackendUnavailableError(
        f"no installed runtime can run package {manifest.name} (artifact formats {formats}). "
        + "; ".join(reasons)
        + (f". Install one of: {hint}" if hint else "")
    )


def resolve_profile(profile: object | str | None) -> object | None:
    """A profile object from a name, or detected on this machine when None. Returns None
    (default runtime order) when profiles are unavailable or detection finds nothing."""
    try:
        import edgefleet.hardware.profiles as profiles
    except ImportError:  # pragma: no cover - hardware.profiles ships with the SDK
        return None
    if isinstance(profile, str):
        try:
            return profiles.get_profile(profile)
        except profiles.ProfileError as e:
            raise ConfigError(str(e)) from e
    if profile is None:
        try:
            return profiles.detect_profile()
        except Exception as e:  # detection is best effort; the default order still works
            log.debug("profile detection failed: %s", e)
            return None
    return profile
