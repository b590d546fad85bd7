"""Choosing an artifact and a backend from the package, the installed runtimes and a
target profile's preference order."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from ._buckets import group_of
from ._errors import BackendUnavailableError, ConfigError, PackageError
from ._manifest import Artifact, Manifest
from .backends import EXTRAS, Backend, BackendOptions, get_backend

__all__ = [
    "Choice",
    "DEFAULT_ORDER",
    "choose",
    "gate_status",
    "profile_runtimes",
    "resolve_profile",
    "runnable",
    "select_artifacts",
]

log = logging.getLogger(__name__)

DEFAULT_ORDER = ("onnxruntime", "litert", "executorch", "torch")
# Smaller and faster first; the accuracy gate has already removed what is not good enough.
_PRECISION_ORDER = ("int4", "int8", "fp16", "fp32")


@dataclass(frozen=True)
class Choice:
    backend: Backend
    artifact: Artifact
    options: BackendOptions | None
    # Every artifact the choice runs: the shape buckets of ``artifact``'s group, smallest
    # first, or just ``artifact``.
    group: tuple[Artifact, ...] = ()


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


def gate_status(manifest: Manifest, artifact: Artifact) -> tuple[bool | None, float | None]:
    """(passes the manifest's accuracy gate, measured value). ``None`` when the package has
    no gate (schema-1 packages). An artifact without a measured value never passes."""
    gate = manifest.metric
    m = artifact.metrics
    value = m.value if m is not None and m.metric in (None, gate and gate.name) else None
    if gate is None:
        return None, value
    return gate.passes(value, m.reference_value if m is not None else None), value


def _rank(manifest: Manifest, a: Artifact, prefer: str | None, gpu: bool = True) -> tuple:
    # fp16 pays only on a GPU; on a CPU it is cast back or emulated, so it ranks last there
    # unless asked for by name.
    cpu_fp16 = a.precision == "fp16" and not gpu and prefer != "fp16"
    order = _PRECISION_ORDER if prefer is None else (prefer, *_PRECISION_ORDER)
    p = order.index(a.precision) if a.precision in order else len(order)
    _, value = gate_status(manifest, a)
    gate = manifest.metric
    # Among equal precisions: the better measured figure, then the smaller file.
    score = (
        0.0 if value is None or gate is None else (-value if gate.direction == "higher" else value)
    )
    return (int(cpu_fp16), p, score, a.size)


def _passing(manifest: Manifest, candidates: list[Artifact]) -> list[Artifact]:
    if manifest.metric is None:
        return candidates
    ok = [a for a in candidates if gate_status(manifest, a)[0]]
    if not ok:
        g = manifest.metric
        figures = ", ".join(f"{a.name}={gate_status(manifest, a)[1]}" for a in candidates)
        raise BackendUnavailableError(
            f"no artifact of {manifest.name} passes its accuracy gate ({g.name} "
            f"{'>=' if g.direction == 'higher' else '<='} floor {g.floor}, max drop "
            f"{g.max_drop}): {figures}; pass an artifact name explicitly to run one anyway"
        )
    return ok


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
    present: frozenset[str] | None = None,
) -> Choice:
    """Pick (backend, artifact, options).

    Automatic choice: artifacts suited to the profile that pass the manifest's accuracy
    gate (never one that fails it), on the first runtime of the profile's preference order
    that is installed and has a usable artifact, then the smallest/fastest precision
    (int4, int8, fp16, fp32; ``precision`` first when given), then the better measured
    metric, then the smaller file. An explicitly named ``artifact`` is used even if it
    failed the gate (with a warning). ``present``: names of the artifacts held locally (a
    partial package); others are not candidates. Explicit ``options[backend]`` win over
    the profile's options for that backend.
    """
    if manifest.task == "text-generation":  # the generation runtimes, as load() picks them
        from ._gen_load import _choose

        b, art = _choose(manifest, backend, artifact, precision, profile)
        return Choice(backend=b, artifact=art, options=None, group=(art,))
    candidates = list(manifest.artifacts)
    if present is not None:
        candidates = [a for a in candidates if a.name in present]
    if artifact is not None:
        named = [a for a in candidates if a.name == artifact]
        if not named:
            if present is not None and any(a.name == artifact for a in manifest.artifacts):
                raise PackageError(
                    f"artifact {artifact!r} of {manifest.name} is not present in this partial "
                    f"package; present: {sorted(present)}"
                )
            raise ConfigError(
                f"package has no artifact {artifact!r}; it has "
                f"{[a.name for a in manifest.artifacts]}"
            )
        if gate_status(manifest, named[0])[0] is False:
            log.warning(
                "artifact %s fails the package's accuracy gate; running it as asked", artifact
            )
        candidates = named
    else:
        pname = getattr(profile, "name", None)
        if pname is not None:
            suited = [a for a in candidates if not a.targets or pname in a.targets]
            candidates = suited or candidates
        if not candidates:
            what = "present artifacts" if present is not None else "artifacts"
            raise BackendUnavailableError(f"package {manifest.name} has no {what}")
        candidates = _passing(manifest, candidates)

    runtimes = profile_runtimes(profile)
    if backend is not None:
        runtimes = [(n, o) for n, o in runtimes if n == backend] or [(backend, {})]
    reasons: list[str] = []
    for name, raw in runtimes:
        b = get_backend(name)
        usable = runnable(name, b, candidates, reasons)
        if not usable:
            continue
        opts = options.get(name) or (_to_options(b, raw) if raw else None)
        gpu = any(a.precision == "fp16" for a in usable) and _has_gpu(name, opts)
        best = min(usable, key=lambda a: _rank(manifest, a, precision, gpu))
        group = tuple(group_of(manifest, best))
        if present is not None:
            missing = [a.name for a in group if a.name not in present]
            if missing:
                raise PackageError(
                    f"bucket(s) {missing} of {best.name}'s group are not present in this "
                    f"partial package; present: {sorted(present)}"
                )
        log.debug("chose %s with artifact %s", name, best.name)
        return Choice(backend=b, artifact=group[0], options=opts, group=group)
    formats = sorted({a.format for a in candidates})
    hint = ", ".join(
        f"'{EXTRAS[n]}'" for n, _ in runtimes if n in EXTRAS and EXTRAS[n] != "edgefleet"
    )
    raise BackendUnavailableError(
        f"no installed runtime can run package {manifest.name} (artifact formats {formats}). "
        + "; ".join(reasons)
        + (f". Install one of: {hint}" if hint else "")
    )


def runnable(name: str, backend, candidates: list[Artifact], reasons: list[str]) -> list[Artifact]:
    """The candidates ``backend`` can run here; [] when none is in its formats or its
    runtime is not installed, with the reason appended to ``reasons`` (for the error that
    names every runtime tried)."""
    usable = [a for a in candidates if a.format in backend.formats]
    if not usable:
        reasons.append(f"{name}: no artifact in formats {list(backend.formats)}")
        return []
    why = backend.available()
    if why:
        reasons.append(f"{name}: {why}")
        return []
    return usable


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


def select_artifacts(
    manifest: Manifest,
    *,
    backend: str | None = None,
    profile: object | str | None = None,
    artifact: str | None = None,
    precision: str | None = None,
) -> list[Artifact]:
    """The artifact(s) :func:`~edgefleet.sdk.load` would run for this profile, backend and
    the runtimes installed here (a bucket group gives all its buckets): what a device
    downloads. Same code path as ``load``, so a device never fetches one artifact and then
    loads another."""
    choice = choose(
        manifest,
        backend=backend,
        artifact=artifact,
        precision=precision,
        profile=resolve_profile(profile),
        options={},
    )
    return list(choice.group or (choice.artifact,))
