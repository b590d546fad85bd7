"""The torch reference backend (workstation parity checks): ``torch.export`` ``.pt2`` files.

``.pt2`` (``torch.export.save``) is the format torch 2.x keeps supported without deprecation
warnings, unlike TorchScript; it loads back as a plain ``nn.Module`` via ``.module()``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from .._errors import BackendError
from .._manifest import Artifact, TensorSpec
from ._base import BackendOptions, TorchOptions
from ._common import (
    SpecsMixin,
    check_options,
    check_threads,
    missing_runtime,
    quiet_imports,
    require_runtime,
    wrap_errors,
)

__all__ = ["TorchBackend", "TorchSession"]

log = logging.getLogger(__name__)


class TorchSession(SpecsMixin):
    # Serialised by our own lock below, so the Model layer need not add another.
    thread_safe = True

    def __init__(self, torch, module, inputs, outputs, source: str) -> None:
        self._torch = torch
        self._module = module
        self._inputs = inputs
        self._outputs = outputs
        self._source = source
        self._in_names = [s.name for s in inputs]
        self._out_names = [s.name for s in outputs]
        self._lock = threading.Lock()

    def _tensor(self, x: np.ndarray):
        if not x.flags.writeable or not x.flags.c_contiguous:
            x = np.array(x, order="C", copy=True)
        return self._torch.from_numpy(x)

    def _collect(self, out) -> list:
        torch = self._torch
        if isinstance(out, torch.Tensor):
            return [out]
        if isinstance(out, dict):
            if all(n in out for n in self._out_names):
                return [out[n] for n in self._out_names]
            return list(out.values())
        if isinstance(out, (list, tuple)):
            return list(out)
        raise BackendError(f"{self._source}: unexpected model output type {type(out).__name__}")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        args = [self._tensor(inputs[n]) for n in self._in_names]
        with self._lock:
            try:
                with torch.inference_mode():
                    outs = self._collect(self._module(*args))
            except BackendError:
                raise
            except Exception as e:
                raise BackendError(f"torch failed running {self._source}: {e}") from e
        if len(outs) != len(self._out_names):
            raise BackendError(
                f"{self._source}: torch returned {len(outs)} outputs, "
                f"the manifest declares {len(self._out_names)} {self._out_names}"
            )
        return {n: o.detach().cpu().numpy() for n, o in zip(self._out_names, outs, strict=True)}

    def close(self) -> None:
        self._module = None


class TorchBackend:
    name = "torch"
    formats = ("pt2",)
    options_type = TorchOptions

    def available(self) -> str | None:
        return missing_runtime(self.name, ["torch"])

    def load(
        self,
        path: Path,
        artifact: Artifact,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        options: BackendOptions | None,
    ) -> TorchSession:
        opts = check_options(options, TorchOptions, self.name)
        check_threads(self.name, num_threads=opts.num_threads)
        require_runtime(self.name, ["torch"])
        with quiet_imports(), wrap_errors("torch could not be imported"):
            import torch

        if opts.num_threads is not None:
            # Process-wide in torch; fine for the reference backend on a workstation.
            torch.set_num_threads(opts.num_threads)
        with quiet_imports(), wrap_errors(f"torch could not load {artifact.name} ({path})"):
            module = torch.export.load(str(path)).module()
        log.debug("torch loaded %s", artifact.name)
        return TorchSession(torch, module, inputs, outputs, artifact.name)
