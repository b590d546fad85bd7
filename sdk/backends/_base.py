"""The backend Protocol, typed options, and the lazy registry of import strings."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from .._errors import BackendUnavailableError
from .._manifest import Artifact, TensorSpec

__all__ = [
    "Session",
    "Backend",
    "OnnxRuntimeOptions",
    "LiteRTOptions",
    "ExecuTorchOptions",
    "TorchOptions",
    "MockOptions",
    "BackendOptions",
    "BACKENDS",
    "EXTRAS",
    "register_backend",
    "get_backend",
    "backend_names",
    "module_available",
]


@dataclass(frozen=True)
class OnnxRuntimeOptions:
    # Providers in priority order; None = best available of TensorRT, CUDA, CPU.
    providers: tuple[str, ...] | None = None
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    # TensorRT only (Jetson): build fp16 engines, and keep built engines in this directory so
    # the next start loads them instead of rebuilding (minutes on a board).
    tensorrt_fp16: bool = False
    tensorrt_cache_dir: str | None = None


@dataclass(frozen=True)
class LiteRTOptions:
    num_threads: int | None = None
    # Extra delegate shared libraries to load (e.g. a board's NPU delegate), in order.
    delegates: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExecuTorchOptions:
    method: str = "forward"


@dataclass(frozen=True)
class TorchOptions:
    num_threads: int | None = None


@dataclass(frozen=True)
class MockOptions:
    """A handler-driven fake runtime: ``handler(inputs) -> outputs``. Without a handler the
    outputs are zeros of the artifact's output specs (symbolic batch from the first input)."""

    handler: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]] | None = None


BackendOptions = OnnxRuntimeOptions | LiteRTOptions | ExecuTorchOptions | TorchOptions | MockOptions


@runtime_checkable
class Session(Protocol):
    """A loaded model in one runtime."""

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def input_specs(self) -> list[TensorSpec]: ...

    def output_specs(self) -> list[TensorSpec]: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """A runtime adapter. ``load`` gets the artifact file, the manifest specs and options."""

    name: str
    formats: tuple[str, ...]
    options_type: type

    def available(self) -> str | None:
        """None when usable here, else the reason it is not (e.g. which extra to install)."""
        ...

    def load(
        self,
        path: Path,
        artifact: Artifact,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        options: BackendOptions | None,
    ) -> Session: ...


# name -> "module:attribute". Imported only when a backend is asked for, so importing the
# SDK never pulls onnxruntime, tflite or torch.
BACKENDS: dict[str, str] = {
    "onnxruntime": "edgefleet.sdk.backends._onnxruntime:OnnxRuntimeBackend",
    "litert": "edgefleet.sdk.backends._litert:LiteRTBackend",
    "executorch": "edgefleet.sdk.backends._executorch:ExecuTorchBackend",
    "torch": "edgefleet.sdk.backends._torch:TorchBackend",
    "mock": "edgefleet.sdk.backends._mock:MockBackend",
}
# Which pip extra brings each backend's runtime, for error messages.
EXTRAS: dict[str, str] = {
    "onnxruntime": "edgefleet[onnxruntime]",
    "litert": "edgefleet[litert]",
    "executorch": "edgefleet[executorch]",
    "torch": "edgefleet[trainer]",
    "mock": "edgefleet",
}
_instances: dict[str, Backend] = {}


def register_backend(name: str, import_string: str, extra: str = "") -> None:
    """Add or replace a backend (third-party runtimes register themselves this way)."""
    BACKENDS[name] = import_string
    EXTRAS[name] = extra or EXTRAS.get(name, "")
    _instances.pop(name, None)


def backend_names() -> list[str]:
    return list(BACKENDS)


def get_backend(name: str) -> Backend:
    """Instantiate (once) and return the backend called ``name``."""
    if name in _instances:
        return _instances[name]
    target = BACKENDS.get(name)
    if target is None:
        raise BackendUnavailableError(
            f"unknown backend {name!r}; expected one of {sorted(BACKENDS)}"
        )
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    backend = getattr(module, attr)()
    _instances[name] = backend
    return backend


def module_available(name: str) -> bool:
    """True if ``name`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
