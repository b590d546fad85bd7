"""A runtime that really crashes the process, like a native segfault in a vendor runtime:
ONNX Runtime for every artifact, except that loading one whose name contains ``abort``
calls ``os.abort()`` (SIGABRT, no Python exception, no cleanup).

Registered by import string (``tests.support.crash_backend:CrashingBackend``) through the
agent's ``backends`` setting, so the agent's smoke-test child process reaches it too.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgefleet.sdk.backends import get_backend

__all__ = ["CRASHING_BACKEND", "CrashingBackend"]

CRASHING_BACKEND = "tests.support.crash_backend:CrashingBackend"


class CrashingBackend:
    name = "crashing"
    formats = ("onnx",)

    def __init__(self) -> None:
        self._ort = get_backend("onnxruntime")
        self.options_type = self._ort.options_type

    def available(self) -> str | None:
        return self._ort.available()

    def load(self, path: Path, artifact, inputs, outputs, options):
        if "abort" in artifact.name:
            os.abort()
        return self._ort.load(path, artifact, inputs, outputs, options)
