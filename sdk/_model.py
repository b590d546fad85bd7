"""The loaded :class:`Model`: validated, cached, measured inference on any backend."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ._buckets import Bucket, pad_to, pick_bucket, slice_outputs
from ._cache import Cache, input_digest
from ._closing import Closing
from ._errors import BackendError, ConfigError, EdgefleetError, InputError, PackageError
from ._manifest import Artifact, Manifest, TensorSpec
from ._metrics import Metrics
from ._package import Package
from ._sessions import SessionPool
from ._validate import InputValidator, batch_size
from .backends import (
    Session,
)

__all__ = ["Model", "ModelInfo", "SmokeResult"]

log = logging.getLogger(__name__)


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
        check_nan: bool = False,
    ) -> None:
        self.info = info
        self._pool = pool
        self.metrics = Metrics()
        self._package = package
        self._session = session
        self._cache = cache
        self._owns_package = owns_package
        self._validate = InputValidator(info.inputs, check_nan=check_nan)
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
