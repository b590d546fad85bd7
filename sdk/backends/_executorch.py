"""The ExecuTorch backend: ``.pte`` programs through ``executorch.runtime``.

Its Python runtime takes torch tensors in and out, so torch is imported here, lazily, at
load time (about 6 s on a small board): never at SDK import.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from .._errors import BackendError
from ._base import ExecuTorchOptions
from ._common import LoadRequest, RuntimeBackend, RuntimeSession, to_torch

__all__ = ["ExecuTorchBackend", "ExecuTorchSession"]

log = logging.getLogger(__name__)


class ExecuTorchSession(RuntimeSession):
    runtime = "executorch"
    thread_safe = True  # serialised by our own lock below

    def __init__(self, torch, program, method, req: LoadRequest) -> None:
        super().__init__(req.inputs, req.outputs, req.artifact.name)
        self._torch = torch
        self._program = program  # keeps the program (and its buffers) alive for the method
        self._method = method
        # A method owns its planned memory: one call at a time.
        self._lock = threading.Lock()

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            try:
                outs = self._method.execute(
                    [to_torch(self._torch, inputs[n]) for n in self._in_names]
                )
            except Exception as e:
                raise self._run_failed(e) from e
        # ExecuTorch copies outputs out of its arenas on every call, so .numpy() is safe.
        return {n: o.numpy() for n, o in self._named(outs)}

    def close(self) -> None:
        self._method = None
        self._program = None


# The Python runtime needs torch too: a half install would fail only at load.
class ExecuTorchBackend(
    RuntimeBackend, name="executorch", formats=("pte",), options=ExecuTorchOptions,
    requires=("executorch", "torch"),
):  # fmt: skip
    def open(self, req: LoadRequest, opts: ExecuTorchOptions) -> ExecuTorchSession:
        path, artifact, inputs, outputs = req.path, req.artifact, req.inputs, req.outputs
        with self.runtime_import():
            import torch
            from executorch.runtime import Runtime

        with self.failing(f"executorch could not load {artifact.name} ({path})"):
            program = Runtime.get().load_program(Path(path))
            if opts.method not in program.method_names:
                raise BackendError(
                    f"{artifact.name}: no method {opts.method!r} in the program; "
                    f"it has {sorted(program.method_names)}"
                )
            method = program.load_method(opts.method)
            meta = method.metadata
        if meta.num_inputs() != len(inputs) or meta.num_outputs() != len(outputs):
            raise BackendError(
                f"{artifact.name}: method {opts.method!r} takes {meta.num_inputs()} inputs and "
                f"returns {meta.num_outputs()} outputs; the manifest declares "
                f"{len(inputs)} and {len(outputs)}"
            )
        log.debug("executorch loaded %s (%s)", artifact.name, opts.method)
        return ExecuTorchSession(torch, program, method, req)
