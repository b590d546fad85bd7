"""The torch reference backend (workstation parity checks): ``torch.export`` ``.pt2`` files.

``.pt2`` (``torch.export.save``) is the format torch 2.x keeps supported without deprecation
warnings, unlike TorchScript; it loads back as a plain ``nn.Module`` via ``.module()``.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from .._errors import BackendError
from ._base import TorchOptions
from ._common import LoadRequest, RuntimeBackend, RuntimeSession, check_threads, to_torch

__all__ = ["TorchBackend", "TorchSession"]

log = logging.getLogger(__name__)


class TorchSession(RuntimeSession):
    runtime = "torch"
    thread_safe = True  # serialised by our own lock below

    def __init__(self, torch, module, req: LoadRequest) -> None:
        super().__init__(req.inputs, req.outputs, req.artifact.name)
        self._torch = torch
        self._module = module
        self._lock = threading.Lock()

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
        args = [to_torch(torch, inputs[n]) for n in self._in_names]
        with self._lock:
            try:
                with torch.inference_mode():
                    outs = self._collect(self._module(*args))
            except BackendError:
                raise
            except Exception as e:
                raise self._run_failed(e) from e
        return {n: o.detach().cpu().numpy() for n, o in self._named(outs)}

    def close(self) -> None:
        self._module = None


class TorchBackend(
    RuntimeBackend, name="torch", formats=("pt2",), options=TorchOptions, requires=("torch",)
):
    def open(self, req: LoadRequest, opts: TorchOptions) -> TorchSession:
        path, artifact = req.path, req.artifact
        check_threads(self.name, num_threads=opts.num_threads)
        with self.runtime_import():
            import torch

        if opts.num_threads is not None:
            # Process-wide in torch; fine for the reference backend on a workstation.
            torch.set_num_threads(opts.num_threads)
        with self.failing(f"torch could not load {artifact.name} ({path})"):
            module = torch.export.load(str(path)).module()
        log.debug("torch loaded %s", artifact.name)
        return TorchSession(torch, module, req)
