"""A handler-driven fake runtime, for tests of the agent and the fleet (no model needed)."""

from __future__ import annotations

import logging

import numpy as np

from .._errors import BackendError
from .._manifest import TensorSpec
from ._base import MockOptions
from ._common import LoadRequest, RuntimeBackend, RuntimeSession

__all__ = ["MockBackend", "MockSession"]

log = logging.getLogger(__name__)


class MockSession(RuntimeSession):
    runtime = "mock"

    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec], options: MockOptions):
        super().__init__(inputs, outputs, "mock")
        self._handler = options.handler
        self.calls = 0
        self.closed = False

    def _zeros(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        first = next(iter(inputs.values()), None)
        batch = first.shape[0] if first is not None and first.ndim else 1
        result = {}
        for spec in self._outputs:
            # Symbolic dims take the batch of the first input (the usual leading "batch").
            shape = [d if isinstance(d, int) else batch for d in spec.shape]
            result[spec.name] = np.zeros(shape, dtype=spec.dtype)
        return result

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.closed:
            raise BackendError("mock session is closed")
        self.calls += 1
        if self._handler is None:
            return self._zeros(inputs)
        try:
            out = self._handler(inputs)
        except Exception as e:
            raise BackendError(f"mock handler failed: {type(e).__name__}: {e}") from e
        missing = [s.name for s in self._outputs if s.name not in out]
        if missing:
            raise BackendError(f"mock handler returned {sorted(out)}, missing outputs {missing}")
        return {s.name: np.asarray(out[s.name]) for s in self._outputs}

    def close(self) -> None:
        self.closed = True


class MockBackend(
    RuntimeBackend,
    name="mock",
    formats=("onnx", "tflite", "pte", "pt2", "torchscript"),
    options=MockOptions,
):
    """Accepts any artifact format; the file is not read, so tests need no real model."""

    def open(self, req: LoadRequest, opts: MockOptions) -> MockSession:
        log.debug("mock loaded %s", req.artifact.name)
        return MockSession(req.inputs, req.outputs, opts)
