"""A runtime that really crashes the process, like a native segfault in a vendor runtime:
ONNX Runtime for every artifact, except that loading one whose name contains ``abort``
calls ``os.abort()`` (SIGABRT, no Python exception, no cleanup).

Registered by import string (``tests.support.crash_backend:CrashingBackend``) through the
agent's ``backends`` setting, so the agent's smoke-test child process reaches it too.
"""

from __future__ import annotations

import os

from tests.support.wrapped_backend import OnnxRuntimeWrapper

__all__ = ["CRASHING_BACKEND", "CrashingBackend"]

CRASHING_BACKEND = "tests.support.crash_backend:CrashingBackend"


class CrashingBackend(OnnxRuntimeWrapper):
    name = "crashing"

    def before_load(self, artifact) -> None:
        if "abort" in artifact.name:
            os.abort()
