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
from .._manifest import Artifact, TensorSpec
from ._base import BackendOptions, ExecuTorchOptions
from ._common import (
    SpecsMixin,
    check_options,
    missing_runtime,
    quiet_imports,
    require_runtime,
    wrap_errors,
)

__all__ = ["ExecuTorchBackend", "ExecuTorchSession"]

log = logging.getLogger(__name__)


class ExecuTorchSession(SpecsMixin):
    # Serialised by our own lock below, so the Model layer need not add another.
    thread_safe = True

    def __init__(self, torch, program, method, inputs, outputs, source: str) -> None:
        self._torch = torch
        self._program = program  # keeps the program (and its buffers) alive for the method
        self._method = method
        self._inputs = inputs
        self._outputs = outputs
        self._source = source
        self._in_names = [s.name for s in inputs]
        self._out_names = [s.name for s in outputs]
        # A method owns its planned memory: one call at a time.
        self._lock = threading.Lock()

    def _tensor(self, x: np.ndarray):
        # from_numpy shares memory and refuses read-only arrays (it warns); copy only then.
        if not x.flags.writeable or not x.flags.c_contiguous:
            x = np.array(x, order="C", copy=True)
        return self._torch.from_numpy(x)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            try:
                outs = self._method.execute([self._tensor(inputs[n]) for n in self._in_names])
            except Exception as e:
                raise BackendError(f"executorch failed running {self._source}: {e}") from e
        if len(outs) != len(self._out_names):
            raise BackendError(
                f"{self._source}: executorch returned {len(outs)} outputs, "
                f"the manifest declares {len(self._out_names)} {self._out_names}"
            )
        # ExecuTorch copies outputs out of its arenas on every call, so .numpy() is safe.
        return {n: o.numpy() for n, o in zip(self._out_names, outs, strict=True)}

    def close(self) -> None:
        self._method = None
        self._program = None


class ExecuTorchBackend:
    name = "executorch"
    formats = ("pte",)
    options_type = ExecuTorchOptions

    def available(self) -> str | None:
        # The Python runtime needs torch too; a half install would fail only at load.
        return missing_runtime(self.name, ["executorch"]) or missing_runtime(self.name, ["torch"])

    def load(
        self,
        path: Path,
        artifact: Artifact,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        options: BackendOptions | None,
    ) -> ExecuTorchSession:
        opts = check_options(options, ExecuTorchOptions, self.name)
        require_runtime(self.name, ["executorch"])
        require_runtime(self.name, ["torch"])
        with quiet_imports(), wrap_errors("executorch runtime could not be imported"):
            import torch
            from executorch.runtime import Runtime

        with wrap_errors(f"executorch could not load {artifact.name} ({path})"):
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
        return ExecuTorchSession(torch, program, method, inputs, outputs, artifact.name)
