"""Stopping the child processes tests start (agents, servers)."""

from __future__ import annotations

import signal
import subprocess

__all__ = ["terminate"]


def terminate(proc: subprocess.Popen | None, grace_s: float = 10) -> None:
    """SIGTERM (the clean stop under test), SIGKILL if it has not exited in ``grace_s``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
