"""``load()`` and :class:`Model`: validated, cached, measured inference on any backend."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._cache import Cache, input_digest
from ._errors import BackendError, EdgefleetError, InputError, PackageError
from ._gen_types import GenerateOptions
from ._manifest import Artifact, Manifest, TensorSpec
from ._metrics import Metrics
from ._package import Package, TrustPolicy, open_package
from ._select import choose, resolve_profile
from ._validate import batch_size, normalize_inputs
from .backends import (
    ExecuTorchOptions,
    LiteRTOptions,
    MockOptions,
    OnnxRuntimeOptions,
    Session,
    TorchOptions,
)

__all__ = ["LoadOptions", "Model", "ModelInfo", "SmokeResult", "load"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadOptions:
    """How :func:`load` picks and prepares a model.

    ``profile``: a target profile name or object; None detects this machine's profile
    (falling back to the default runtime order). ``precision`` prefers an artifact
    precision (default: int8, then fp16, then fp32). Per-backend options override the
    profile's options for that backend. ``cache``: a ResultCache/PersistentCache or None.
    """

    profile: object | str | None = None
    artifact: str | None = None
    precision: str | None = None
    trust: TrustPolicy = field(default_factory=TrustPolicy)
    cache: Cache | None = None
    warmup: int = 1
    onnxruntime: OnnxRuntimeOptions | None = None
    litert: LiteRTOptions | None = None
    executorch: ExecuTorchOptions | None = None
    torch: TorchOptions | None = None
    mock: MockOptions | None = None
    # generative packages (task "text-generation"): threads, prefix cache size
    generation: GenerateOptions | None = None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    digest: str
    backend: str
    artifact: Artifact
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    manifest: Manifest
    profile: str | None
    signature_state: str


@dataclass(frozen=True)
class SmokeResult:
    passed: bool
    max_abs_error: float
    detail: str


class Model:
    """A loaded model. ``predict`` is thread-safe."""

    def __init__(
        self,
        package: Package,
        session: Session,
        info: ModelInfo,
        cache: Cache | None,
        owns_package: bool,
    ) -> None:
        self.info = info
        self.metrics = Metrics()
        self._package = package
        self._session = session
        self._cache = cache
        self._owns_package = owns_package
        self._dtypes = [np.dtype(s.dtype) for s in info.inputs]
        self._fixed_batch = info.artifact.fixed_batch
        # Runtimes that are not re-entrant (a TFLite interpreter) get a lock; ORT does not.
        self._lock = None if getattr(session, "thread_safe", False) else threading.Lock()
        self._closed = False

    @property
    def package(self) -> Package:
        return self._package

    def predict(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Run the model. ``inputs``: one array (single-input models) or name -> array.
        Returns name -> array for every output in the manifest."""
        if self._closed:
            raise EdgefleetError(f"model {self.info.name} is closed")
        t0 = time.perf_counter()
        try:
            feed = normalize_inputs(self.info.inputs, self._dtypes, inputs)
        except InputError:
            self.metrics.record_call(time.perf_counter() - t0, error=True)
            raise
        key = None
        if self._cache is not None:
            key = f"{self.info.digest}:{self.info.artifact.name}:{input_digest(feed)}"
            hit = self._cache.get(key)
            self.metrics.record_cache(hit is not None)
            if hit is not None:
                self.metrics.record_call(time.perf_counter() - t0)
                return hit
        try:
            outputs = self._run(feed)
        except EdgefleetError:
            self.metrics.record_call(time.perf_counter() - t0, error=True)
            raise
        except Exception as e:  # a runtime's own exception never escapes bare
            self.metrics.record_call(time.perf_counter() - t0, error=True)
            raise BackendError(f"{self.info.backend} failed running {self.info.name}: {e}") from e
        if key is not None:
            self._cache.put(key, outputs)
        self.metrics.record_call(time.perf_counter() - t0)
        return outputs

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        fixed = self._fixed_batch
        n = batch_size(self.info.inputs, feed) if fixed else None
        if n is None or n == fixed:
            return self._call(feed)
        # The artifact was exported for a fixed batch: run chunks, pad the last one.
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, n, fixed):
            chunk = {k: v[start : start + fixed] for k, v in feed.items()}
            got = next(iter(chunk.values())).shape[0]
            if got < fixed:
                chunk = {
                    k: np.concatenate([v, np.repeat(v[-1:], fixed - got, axis=0)])
                    for k, v in chunk.items()
                }
            out = self._call(chunk)
            parts.append({k: v[:got] for k, v in out.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _call(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._lock is None:
            out = self._session.run(feed)
        else:
            with self._lock:
                out = self._session.run(feed)
        missing = [s.name for s in self.info.outputs if s.name not in out]
        if missing:
            raise BackendError(f"{self.info.backend} returned no output(s) {missing}")
        return out

    def smoke_test(self) -> SmokeResult:
        """Run the package's golden inputs and compare with this artifact's expected outputs
        (what a device does before activating a package)."""
        a = self.info.artifact
        try:
            golden_in = self._package.golden_inputs()
            expected = self._package.golden_outputs(a)
        except PackageError as e:
            return SmokeResult(False, float("inf"), str(e))
        try:
            got = self._run(normalize_inputs(self.info.inputs, self._dtypes, golden_in))
        except Exception as e:
            return SmokeResult(False, float("inf"), f"golden inputs failed to run: {e}")
        worst, bad = 0.0, []
        for name, want in expected.items():
            have = got.get(name)
            if have is None or have.shape != want.shape:
                bad.append(f"{name}: shape {None if have is None else have.shape} != {want.shape}")
                continue
            err = float(np.max(np.abs(have.astype(np.float64) - want.astype(np.float64))))
            worst = max(worst, err)
            if not np.allclose(have, want, atol=a.golden_atol, rtol=a.golden_rtol):
                bad.append(f"{name}: max abs error {err:.3g} over atol {a.golden_atol}")
        if bad:
            return SmokeResult(False, worst, "; ".join(bad))
        return SmokeResult(True, worst, "golden outputs match")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._session.close()
            if self._owns_package:
                self._package.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        i = self.info
        return f"<Model {i.name} {i.version} {i.artifact.name} on {i.backend}>"


def _warmup(model: Model, rounds: int) -> None:
    fixed = model.info.artifact.fixed_batch or 1
    feed = {}
    for spec, dt in zip(model.info.inputs, model._dtypes, strict=True):
        shape = [d if isinstance(d, int) else fixed for d in spec.shape]
        feed[spec.name] = np.zeros(shape, dtype=dt)
    for _ in range(rounds):
        model._call(feed)


def load(
    package: str | Path | Package,
    backend: str | None = None,
    options: LoadOptions | None = None,
) -> Model:
    """Load a package (directory, ``.efpkg`` or an opened :class:`Package`) on the best
    runtime for this machine, or on ``backend`` when given. A text-generation package
    gives a :class:`~edgefleet.sdk.GenerativeModel` (``generate()`` streams tokens)."""
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
            options={
                "onnxruntime": options.onnxruntime,
                "litert": options.litert,
                "executorch": options.executorch,
                "torch": options.torch,
                "mock": options.mock,
            },
        )
        m = pkg.manifest
        try:
            session = choice.backend.load(
                pkg.artifact_path(choice.artifact),
                choice.artifact,
                list(m.inputs),
                list(m.outputs),
                choice.options,
            )
        except EdgefleetError:
            raise
        except Exception as e:
            raise BackendError(
                f"{choice.backend.name} could not load {choice.artifact.name} of {m.name}: {e}"
            ) from e
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
        )
        model = Model(pkg, session, info, options.cache, owns)
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
