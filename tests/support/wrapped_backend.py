"""Test runtimes that are ONNX Runtime with one twist when a model loads (a crash, a slow
load): a subclass sets ``name`` and overrides :meth:`OnnxRuntimeWrapper.before_load`."""

from __future__ import annotations

from pathlib import Path

from edgefleet.sdk.backends import get_backend

__all__ = ["OnnxRuntimeWrapper"]


class OnnxRuntimeWrapper:
    name = "onnxruntime-wrapper"
    formats = ("onnx",)

    def __init__(self) -> None:
        self._ort = get_backend("onnxruntime")
        self.options_type = self._ort.options_type

    def available(self) -> str | None:
        return self._ort.available()

    def before_load(self, artifact) -> None:
        """Runs before ONNX Runtime loads ``artifact``; nothing by default."""

    def load(self, path: Path, artifact, inputs, outputs, options):
        self.before_load(artifact)
        return self._ort.load(path, artifact, inputs, outputs, options)
