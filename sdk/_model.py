"""``load()`` and :class:`Model`: validated, cached, measured inference on any backend."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._buckets import Bucket, bucket_sizes, pad_to, pick_bucket, slice_outputs
from ._cache import Cache, input_digest
from ._closing import Closing
from ._errors import BackendError, ConfigError, EdgefleetError, InputError, PackageError
from ._gen_types import GenerateOptions
from ._manifest import Artifact, Manifest, TensorSpec
from ._metrics import Metrics
from ._package import Package, TrustPolicy, open_package
from ._select import choose, resolve_profile
from ._sessions import SessionPool
from ._validate import InputValidator, batch_size
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
    ``sessions``: up to this many runtime sessions serve concurrent ``predict`` calls (a
    bounded pool, grown on demand); worth it where a runtime serialises one session
    (LiteRT, ExecuTorch); ONNX Runtime sessions are re-entrant, so 1 suits it.
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
    sessions: int = 1

    def __post_init__(self) -> None:
        if (
            isinstance(self.sessions, bool)
            or not isinstance(self.sessions, int)
            or self.sessions < 1
        ):
            raise ConfigError(f"sessions: expected an integer >= 1, got {self.sessions!r}")


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
    # The shape buckets this model runs (smallest first) when its artifact is one of a
    # bucket group; () for an artifact with symbolic dims.
    buckets: tuple[Artifact, ...] = ()


@dataclass(frozen=True)
class SmokeResult:
    passed: bool
    max_abs_error: float
    detail: str


class Model(Closing):
    """A loaded model. ``predict`` is thread-safe."""

    def __init__(
        self,
        package: Package,
        session: Session,
        info: ModelInfo,
        cache: Cache | None,
        owns_package: bool,
        buckets: list[tuple[Bucket, Session]] | None = None,
        pool: SessionPool | None = None,
    ) -> None:
        self.info = info
        self._pool = pool
        self.metrics = Metrics()
        self._package = package
        self._session = session
        self._cache = cache
        self._owns_package = owns_package
        self._validate = InputValidator(info.inputs)
        self._out_names = [s.name for s in info.outputs]
        self._out_set = frozenset(self._out_names)
        self._fixed_batch = info.artifact.fixed_batch
        self._buckets = buckets or []
        self._pad_values = dict(info.manifest.pad_values)
        self._key_prefix = f"{info.digest}:{info.artifact.name}:"
        # Runtimes that are not re-entrant (a TFLite interpreter) get a lock; ORT does not.
        self._lock = None if getattr(session, "thread_safe", False) else threading.Lock()
        self._closed = False
        self._tokenizer = None
        # The common case (one session, any batch, re-entrant runtime) runs inline in
        # predict(): no bucket, chunking or lock layers per call.
        self._direct = None if (self._buckets or self._fixed_batch or self._lock) else session
        self._check_direct = not getattr(session, "complete_outputs", False)

    @property
    def package(self) -> Package:
        return self._package

    def predict(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Run the model. ``inputs``: one array (single-input models) or name -> array.
        Returns name -> array for every output in the manifest.

        Inputs are checked against the manifest: names, dtypes (no cast across kinds: int
        ids given to a float input are an :class:`InputError`), every fixed dimension, and
        symbolic ones (``batch``, ``sequence``...) bound to one size across all inputs. For
        a package of shape buckets the smallest bucket that fits runs; inputs are padded
        with ``Manifest.pad_values`` (0 by default, so an attention mask masks the padding)
        and outputs carrying a padded dimension are cut back to the true length; inputs
        longer than the largest bucket are an :class:`InputError`.
        """
        if self._closed:
            raise EdgefleetError(f"model {self.info.name} is closed")
        t0 = time.perf_counter()
        try:
            feed, sizes = self._validate(inputs)
        except InputError:
            self.metrics.record_call(time.perf_counter() - t0, error=True)
            raise
        key = None
        if self._cache is not None:
            key = self._key_prefix + input_digest(feed)
            hit = self._cache.get(key)
            self.metrics.record_cache(hit is not None)
            if hit is not None:
                self.metrics.record_call(time.perf_counter() - t0)
                return hit
        try:
            direct = self._direct
            if direct is not None:
                outputs = direct.run(feed)
                if self._check_direct and not self._out_set <= outputs.keys():
                    outputs = self._call(direct, None, feed)  # raises, naming what is missing
            else:
                outputs = self._run(feed, sizes)
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

    def predict_text(self, texts: str | list[str]) -> dict[str, np.ndarray]:
        """Tokenize ``texts`` with the package's tokenizer (``Preprocessing.text``; needs
        the ``tokenizers`` library: ``pip install 'edgefleet[text]'``) and predict. The
        batch is padded to its longest text (truncated at ``max_length``); shape buckets
        then pad further as :meth:`predict` says."""
        from ._text import load_tokenizer, tokenize

        spec = self.info.manifest.preprocessing.text
        if spec is None:
            raise ConfigError(
                f"package {self.info.name} declares no text preprocessing "
                "(Preprocessing.text); call predict() with arrays"
            )
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self._package, spec)
        feed = tokenize(self._tokenizer, spec, self.info.inputs, texts)
        return self.predict(feed)

    def _run(self, feed: dict[str, np.ndarray], sizes: dict[str, int]) -> dict[str, np.ndarray]:
        if self._buckets:
            return self._run_bucket(feed, sizes)
        fixed = self._fixed_batch
        if not fixed:
            return self._call(self._session, self._lock, feed)
        return self._chunked(self._session, self._lock, fixed, feed)

    def _run_bucket(self, feed: dict[str, np.ndarray], sizes: dict[str, int]):
        bucket, session = self._pick(sizes)
        lock = None if getattr(session, "thread_safe", False) else self._lock
        padded = pad_to(feed, self.info.inputs, bucket, sizes, self._pad_values)
        if bucket.batch:
            out = self._chunked(session, lock, bucket.batch, padded)
        else:
            out = self._call(session, lock, padded)
        return slice_outputs(out, self.info.outputs, bucket, sizes)

    def _pick(self, sizes: dict[str, int]) -> tuple[Bucket, Session]:
        bucket = pick_bucket([b for b, _ in self._buckets], sizes)
        return next((b, s) for b, s in self._buckets if b is bucket)

    def _chunked(self, session, lock, fixed: int, feed: dict[str, np.ndarray]):
        n = batch_size(self.info.inputs, feed)
        if n is None or n == fixed:
            return self._call(session, lock, feed)
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
            out = self._call(session, lock, chunk)
            parts.append({k: v[:got] for k, v in out.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _call(self, session, lock, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._pool is not None and session is self._session:
            with self._pool.acquire() as pooled:
                out = pooled.run(feed)
        elif lock is None:
            out = session.run(feed)
        else:
            with lock:
                out = session.run(feed)
        if not self._out_set <= out.keys():
            missing = [n for n in self._out_names if n not in out]
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
            got = self._run(*self._validate(golden_in))
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
            self._direct = None
            (self._pool or self._session).close()
            for _, session in self._buckets:
                if session is not self._session:
                    session.close()
            if self._owns_package:
                self._package.close()

    def __repr__(self) -> str:
        i = self.info
        return f"<Model {i.name} {i.version} {i.artifact.name} on {i.backend}>"


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


def _load_session(choice, pkg: Package, artifact: Artifact) -> Session:
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
        buckets: list[tuple[Bucket, Session]] = []
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
        model = Model(pkg, session, info, options.cache, owns, buckets, pool)
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
