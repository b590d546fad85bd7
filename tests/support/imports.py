"""What a fresh interpreter has imported after some code: the start-up cost of a role
(the agent, the API client) in modules it does not use, checked in a clean process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable

__all__ = ["modules_loaded_by"]


def modules_loaded_by(code: str, candidates: Iterable[str]) -> list[str]:
    """Which of ``candidates`` are in ``sys.modules`` after a new Python runs ``code``."""
    names = tuple(candidates)
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {names!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]
