"""The ONNX Runtime backend: providers in priority order, threads, optimisation level."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .._errors import BackendError, ConfigError
from .._manifest import Artifact, TensorSpec
from ._base import BackendOptions, OnnxRuntimeOptions
from ._common import (
    SpecsMixin,
    check_options,
    check_threads,
    match_names,
    missing_runtime,
    require_runtime,
    wrap_errors,
)

__all__ = ["OnnxRuntimeBackend", "OnnxRuntimeSession"]

log = logging.getLogger(__name__)

# Best first; whatever of these the installed build offers is used when none are given.
DEFAULT_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def choose_providers(requested: tuple[str, ...] | None, available: list[str]) -> list[str]:
    """Requested (or default) providers that this onnxruntime build has, order kept."""
    wanted = requested if requested is not None else DEFAULT_PROVIDERS
    chosen = [p for p in wanted if p in available]
    dropped = [p for p in wanted if p not in available]
    if requested is not None and dropped:
        log.warning("onnxruntime providers %s are not available here; using %s", dropped, chosen)
    if not chosen:
        raise ConfigError(
            f"none of the onnxruntime providers {list(wanted)} is available; "
            f"this build offers {available}"
        )
    return chosen


def provider_entries(providers: list[str], opts: OnnxRuntimeOptions) -> list:
    """``providers`` for InferenceSession, TensorRT with its fp16/engine-cache options."""
    trt: dict[str, str] = {}
    if opts.tensorrt_fp16:
        trt["trt_fp16_enable"] = "True"
    if opts.tensorrt_cache_dir:
        trt.update(
            trt_engine_cache_enable="True",
            trt_engine_cache_path=opts.tensorrt_cache_dir,
            trt_timing_cache_enable="True",
            trt_timing_cache_path=opts.tensorrt_cache_dir,
        )
    return [(p, trt) if p == "TensorrtExecutionProvider" and trt else p for p in providers]


class OnnxRuntimeSession(SpecsMixin):
    # InferenceSession.run is re-entrant: the Model layer need not serialise calls.
    thread_safe = True

    def __init__(self, sess, inputs: list[TensorSpec], outputs: list[TensorSpec], source: str):
        self._sess = sess
        self._inputs = inputs
        self._outputs = outputs
        self._source = source
        rt_in = [i.name for i in sess.get_inputs()]
        rt_out = [o.name for o in sess.get_outputs()]
        in_idx = match_names(rt_in, inputs, "input", source)
        out_idx = match_names(rt_out, outputs, "output", source)
        # Pre-computed once so run() is a dict lookup away from the raw sess.run call.
        self._feed_names = [(s.name, rt_in[i]) for s, i in zip(inputs, in_idx, strict=True)]
        self._same_inputs = all(a == b for a, b in self._feed_names)
        self._rt_outputs = [rt_out[i] for i in out_idx]
        self._out_names = [s.name for s in outputs]
        self.providers = list(sess.get_providers())

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = inputs if self._same_inputs else {rt: inputs[name] for name, rt in self._feed_names}
        try:
            results = self._sess.run(self._rt_outputs, feed)
        except Exception as e:  # onnxruntime raises its own pybind exception types
            raise BackendError(f"onnxruntime failed running {self._source}: {e}") from e
        return dict(zip(self._out_names, results, strict=True))

    @property
    def session_options(self):
        """The onnxruntime SessionOptions in effect (threads, optimisation level)."""
        return self._sess.get_session_options()

    def close(self) -> None:
        self._sess = None


class OnnxRuntimeBackend:
    name = "onnxruntime"
    formats = ("onnx",)
    options_type = OnnxRuntimeOptions

    def available(self) -> str | None:
        return missing_runtime(self.name, ["onnxruntime"])

    def load(
        self,
        path: Path,
        artifact: Artifact,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        options: BackendOptions | None,
    ) -> OnnxRuntimeSession:
        opts = check_options(options, OnnxRuntimeOptions, self.name)
        check_threads(
            self.name,
            intra_op_threads=opts.intra_op_threads,
            inter_op_threads=opts.inter_op_threads,
        )
        if opts.graph_optimization not in _LEVELS:
            raise ConfigError(
                f"onnxruntime graph_optimization must be one of {list(_LEVELS)}, "
                f"got {opts.graph_optimization!r}"
            )
        if opts.providers is not None and (
            isinstance(opts.providers, str) or not all(isinstance(p, str) for p in opts.providers)
        ):
            raise ConfigError(
                f"onnxruntime providers must be a tuple of provider names, got {opts.providers!r}"
            )
        require_runtime(self.name, ["onnxruntime"])
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, _LEVELS[opts.graph_optimization]
        )
        if opts.intra_op_threads is not None:
            so.intra_op_num_threads = opts.intra_op_threads
        if opts.inter_op_threads is not None:
            so.inter_op_num_threads = opts.inter_op_threads
        providers = choose_providers(opts.providers, ort.get_available_providers())
        if opts.tensorrt_cache_dir and "TensorrtExecutionProvider" in providers:
            Path(opts.tensorrt_cache_dir).expanduser().mkdir(parents=True, exist_ok=True)
        entries = provider_entries(providers, opts)
        with wrap_errors(f"onnxruntime could not load {artifact.name} ({path})"):
            sess = ort.InferenceSession(str(path), sess_options=so, providers=entries)
            session = OnnxRuntimeSession(sess, inputs, outputs, artifact.name)
        log.debug("onnxruntime loaded %s with providers %s", artifact.name, session.providers)
        return session
