"""The ONNX Runtime backend: providers in priority order, threads, optimisation level."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .._errors import BackendError, ConfigError
from .._manifest import TensorSpec
from ._base import OnnxRuntimeOptions
from ._common import LoadRequest, RuntimeBackend, RuntimeSession, check_threads, match_names

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


def _closed(*args: object) -> None:
    raise BackendError("the onnxruntime session is closed")


class OnnxRuntimeSession(RuntimeSession):
    runtime = "onnxruntime"
    thread_safe = True  # InferenceSession.run is re-entrant
    complete_outputs = True  # run() zips every matched output name (strict)

    def __init__(self, sess, inputs: list[TensorSpec], outputs: list[TensorSpec], source: str):
        super().__init__(inputs, outputs, source)
        self._sess = sess
        rt_in = [i.name for i in sess.get_inputs()]
        rt_out = [o.name for o in sess.get_outputs()]
        in_idx = match_names(rt_in, inputs, "input", source)
        out_idx = match_names(rt_out, outputs, "output", source)
        # Pre-computed once so run() is a dict lookup away from the raw sess.run call.
        self._feed_names = [(s.name, rt_in[i]) for s, i in zip(inputs, in_idx, strict=True)]
        self._same_inputs = all(a == b for a, b in self._feed_names)
        self._rt_outputs = [rt_out[i] for i in out_idx]
        self.providers = list(sess.get_providers())
        # InferenceSession.run re-checks input names the SDK has already validated, then
        # calls its C session; on the CPU provider alone (no EP fallback to handle) call
        # that C session directly: a few us per call, most of a tiny model's SDK overhead.
        # Both take (output names, feed, run options).
        c_sess = getattr(sess, "_sess", None)
        if self.providers == ["CPUExecutionProvider"] and hasattr(c_sess, "run"):
            self._call = c_sess.run
        else:
            self._call = sess.run

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = inputs if self._same_inputs else {rt: inputs[name] for name, rt in self._feed_names}
        try:
            results = self._call(self._rt_outputs, feed, None)
        except Exception as e:  # onnxruntime raises its own pybind exception types
            raise self._run_failed(e) from e
        return dict(zip(self._out_names, results, strict=True))

    @property
    def session_options(self):
        """The onnxruntime SessionOptions in effect (threads, optimisation level)."""
        return self._sess.get_session_options()

    def close(self) -> None:
        self._sess = None
        self._call = _closed


class OnnxRuntimeBackend(
    RuntimeBackend,
    name="onnxruntime",
    formats=("onnx",),
    options=OnnxRuntimeOptions,
    requires=("onnxruntime",),
):
    def open(self, req: LoadRequest, opts: OnnxRuntimeOptions) -> OnnxRuntimeSession:
        path, artifact = req.path, req.artifact
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
        with self.runtime_import():
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
        with self.failing(f"onnxruntime could not load {artifact.name} ({path})"):
            sess = ort.InferenceSession(str(path), sess_options=so, providers=entries)
            session = OnnxRuntimeSession(sess, req.inputs, req.outputs, artifact.name)
        log.debug("onnxruntime loaded %s with providers %s", artifact.name, session.providers)
        return session
