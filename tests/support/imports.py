"""What a fresh interpreter imports: for tests that keep heavy stacks (torch, a web
server, a database layer) out of light entry points."""

from __future__ import annotations

import subprocess
import sys

__all__ = ["imported_by"]


def imported_by(statement: str, watch: tuple[str, ...]) -> list[str]:
    """The modules of ``watch`` in ``sys.modules`` after a new Python runs ``statement``."""
    code = f"import sys\n{statement}\nprint(','.join(m for m in {watch!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]
