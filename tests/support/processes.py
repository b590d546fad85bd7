"""Ending a child process the way a service manager does: SIGTERM, then SIGKILL.

Used by the whole-system tests, the Mosquitto fixture, the distribution tests and the
benchmarks that run real ``edgefleet`` processes.
"""

from __future__ import annotations

import signal
import subprocess

__all__ = ["stop_process"]


def stop_process(proc: subprocess.Popen | None, timeout: float = 15.0) -> int | None:
    """SIGTERM ``proc`` (if it still runs), SIGKILL it after ``timeout`` seconds; its exit
    code (None for no process). A clean shutdown gets the whole timeout; a hung one never
    outlives the caller."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
