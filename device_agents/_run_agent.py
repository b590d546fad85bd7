"""Run one agent until SIGTERM/SIGINT: shared by ``edgefleet agent run`` (Typer) and the lean
``python -m edgefleet.device_agents run`` entry the systemd unit uses (argparse: no Typer or
rich to import on a board). Both build their options from :data:`RUN_OPTIONS`."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RUN_OPTIONS", "RunOption", "run_agent", "run_from_options", "run_parser"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOption:
    """One option of ``agent run``: its flag, the settings field it overrides (None: the
    config file itself), the value type, help, and whether it may repeat."""

    flag: str
    setting: str | None
    type: type
    help: str
    many: bool = False
    short: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


RUN_OPTIONS = (
    RunOption("--config", None, Path, "agent.toml (env EDGEFLEET_AGENT_* overrides)", short="-c"),
    RunOption("--device-id", "device_id", str, "Overrides the config's device_id."),
    RunOption("--broker", "broker_url", str, "mqtt://host:port or mqtts://host:port"),
    RunOption("--data-dir", "data_dir", Path, "Store, journal and telemetry queue."),
    RunOption("--fleet-key", "fleet_keys", Path, "Fleet public key that signs commands.", True),
)


def run_parser(prog: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog)
    for o in RUN_OPTIONS:
        flags = [o.flag, o.short] if o.short else [o.flag]
        ap.add_argument(*flags, type=o.type, help=o.help, action="append" if o.many else None)
    return ap


def run_from_options(values: dict[str, object]) -> None:
    """``run_agent`` with parsed options (keyed by :attr:`RunOption.dest`)."""
    config = None
    overrides: dict[str, object] = {}
    for o in RUN_OPTIONS:
        value = values.get(o.dest) or None  # an empty repeatable option = not given
        if o.setting is None:
            config = value
        else:
            overrides[o.setting] = value
    run_agent(config, **overrides)


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
