"""``load()``: open a package, choose the artifact and runtime, warm up a :class:`Model`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import backends
from ._buckets import Bucket, bucket_sizes
from ._cache import Cache
from ._errors import BackendError, ConfigError, EdgefleetError
from ._gen_types import GenerateOptions
from ._manifest import Artifact
from ._model import Model, ModelInfo
from ._package import Package, TrustPolicy, open_package
from ._select import choose, resolve_profile
from ._sessions import SessionPool

__all__ = ["LoadOptions", "load"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadOptions:
    """How :func:`load` picks and prepares a model.

    ``profile``: a target profile name or object; None detects this machine's profile
    (falling back to the default runtime order). ``precision`` prefers an artifact
    precision (default: int8, then fp16, then fp32). Per-backend options override the
    profile's options for that backend. ``cache``: a ResultCache/PersistentCache or None.
    ``sessions``: up to this many runtime sessions serve concurrent ``predict`` calls (a
    bounded pool, grown on demand); worth it where a runtime serialises one session
    (LiteRT, ExecuTorch); ONNX Runtime sessions are re-entrant, so 1 suits it.
    ``check_nan``: refuse NaN in float inputs whose spec forbids it (``allow_nan`` false,
    the default in a manifest). Off by default, as in the runtimes themselves: the scan
    costs 3-6 us a call, more than the rest of the SDK's overhead on a 15 us model
    (``benchmarks/sdk_overhead.py`` measures both). Turn it on where inputs come from
    outside the app; the device agent's local endpoint does.
    """

    profile: object | str | None = None
    artifact: str | None = None
    precision: str | None = None
    trust: TrustPolicy = field(default_factory=TrustPolicy)
    cache: Cache | None = None
    warmup: int = 1
    onnxruntime: backends.OnnxRuntimeOptions | None = None
    litert: backends.LiteRTOptions | None = None
    executorch: backends.ExecuTorchOptions | None = None
    torch: backends.TorchOptions | None = None
    mock: backends.MockOptions | None = None
    # generative packages (task "text-generation"): threads, prefix cache size
    generation: GenerateOptions | None = None
    sessions: int = 1
    check_nan: bool = False

    def __post_init__(self) -> None:
        if (
            isinstance(self.sessions, bool)
            or not isinstance(self.sessions, int)
            or self.sessions < 1
        ):
            raise ConfigError(f"sessions: expected an integer >= 1, got {self.sessions!r}")


def _warmup(model: Model, rounds: int) -> None:
    targets = [(b.artifact, s, b.batch) for b, s in model._buckets] or [
        (model.info.artifact, model._session, model.info.artifact.fixed_batch)
    ]
    for artifact, session, fixed in targets:
        shapes = artifact.input_shapes or {}
        feed = {}
        for spec in model.info.inputs:
            shape = shapes.get(spec.name, spec.shape)
            feed[spec.name] = np.zeros(
                [d if isinstance(d, int) else (fixed or 1) for d in shape], np.dtype(spec.dtype)
            )
        lock = None if getattr(session, "thread_safe", False) else model._lock
        for _ in range(rounds):
            model._call(session, lock, feed)


def _load_session(choice, pkg: Package, artifact: Artifact) -> backends.Session:
    m = pkg.manifest
    try:
        return choice.backend.load(
            pkg.artifact_path(artifact), artifact, list(m.inputs), list(m.outputs), choice.options
        )
    except EdgefleetError:
        raise
    except Exception as e:
        raise BackendError(
            f"{choice.backend.name} could not load {artifact.name} of {m.name}: {e}"
        ) from e


def load(
    package: str | Path | Package,
    backend: str | None = None,
    options: LoadOptions | None = None,
) -> Model:
    """Load a package (directory, ``.efpkg`` or an opened :class:`Package`) on the best
    runtime for this machine, or on ``backend`` when given.

    Automatic choice (``options.artifact`` unset): never an artifact that fails the
    manifest's accuracy gate (``Manifest.metric``, measured in ``ArtifactMetrics.value``);
    the profile's runtime preference first, then the smallest/fastest precision, then the
    better measured figure. An artifact of a shape-bucket group loads every bucket of the
    group; :meth:`Model.predict` runs the smallest that fits and pads (see there). A partial
    package (a device's per-artifact download) loads only the artifacts it holds. A
    text-generation package gives a :class:`~edgefleet.sdk.GenerativeModel` (``generate()``
    streams tokens)."""
    options = options or LoadOptions()
    owns = not isinstance(package, Package)
    pkg = open_package(package, options.trust) if owns else package
    try:
        profile = resolve_profile(options.profile)
        if pkg.manifest.task == "text-generation":
            from ._gen_load import load_generative

            return load_generative(pkg, backend, options, profile, owns)
        choice = choose(
            pkg.manifest,
            backend=backend,
            artifact=options.artifact,
            precision=options.precision,
            profile=profile,
            present=pkg.present,
            options={
                "onnxruntime": options.onnxruntime,
                "litert": options.litert,
                "executorch": options.executorch,
                "torch": options.torch,
                "mock": options.mock,
            },
        )
        m = pkg.manifest
        group = choice.group or (choice.artifact,)
        buckets: list[tuple[Bucket, backends.Session]] = []
        try:
            for a in group:
                b = bucket_sizes(a, list(m.inputs))
                if a.input_shapes is not None or len(group) > 1:
                    buckets.append((b, _load_session(choice, pkg, a)))
            session = buckets[0][1] if buckets else _load_session(choice, pkg, choice.artifact)
        except BaseException:
            for _, s in buckets:
                s.close()
            raise
        info = ModelInfo(
            name=m.name,
            version=m.version,
            digest=pkg.digest,
            backend=choice.backend.name,
            artifact=choice.artifact,
            inputs=list(m.inputs),
            outputs=list(m.outputs),
            manifest=m,
            profile=getattr(profile, "name", None),
            signature_state=pkg.signature_state,
            buckets=tuple(b.artifact for b, _ in buckets),
        )
        pool = None
        if options.sessions > 1 and not buckets:
            pool = SessionPool(
                session, lambda: _load_session(choice, pkg, choice.artifact), options.sessions
            )
        model = Model(pkg, session, info, options.cache, owns, buckets, pool, options.check_nan)
        if options.warmup:
            try:
                _warmup(model, options.warmup)
            except Exception as e:
                model.close()
                raise BackendError(f"warm-up of {m.name} on {info.backend} failed: {e}") from e
        log.info("loaded %s %s (%s) on %s", m.name, m.version, choice.artifact.name, info.backend)
        return model
    except BaseException:
        if owns:
            pkg.close()
        raise
