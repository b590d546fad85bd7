"""Run one agent until SIGTERM/SIGINT: shared by ``edgefleet agent run`` and the lean
``python -m edgefleet.device_agents run`` entry the systemd unit uses."""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
import threading
from pathlib import Path

__all__ = ["run_agent", "wait_for_signal"]

log = logging.getLogger(__name__)


def wait_for_signal(stop_after: float | None = None) -> None:
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait(stop_after)


def run_agent(config: Path | None, **overrides: object) -> None:
    """Start the agent from ``config`` + environment + ``overrides``; stop it gracefully
    (retained offline state, clean disconnect) on SIGTERM/SIGINT."""
    from ._agent import Agent
    from ._settings import AgentSettings

    settings = AgentSettings.load(config, **overrides)
    # A native crash (a runtime's segfault or abort) prints every thread's Python stack
    # to stderr (the journal under systemd) before the process dies, not nothing.
    try:
        faulthandler.enable(file=sys.stderr, all_threads=True)
    except (AttributeError, ValueError, OSError):  # stderr captured (no file descriptor)
        faulthandler.enable(file=sys.__stderr__, all_threads=True)
    # `kill -USR1 <pid>` prints every thread's stack to stderr (the journal under systemd):
    # how to see where a hung agent on a board is stuck without a debugger.
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    agent = Agent(settings).start()
    try:
        wait_for_signal()
    finally:
        agent.stop(graceful=True)
