"""Helpers for whole-system tests: real processes (``python -m edgefleet ...``) with their
logs kept in tmp dirs, always stopped at teardown (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto, free_port
from tests.support.processes import terminate

EDGEFLEET = [sys.executable, "-m", "edgefleet"]


@dataclass
class Procs:
    """Processes started by one test; ``stop_all`` ends each by its pid."""

    root: Path
    started: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        full_env = {**os.environ, "EDGEFLEET_LOG_LEVEL": "INFO", **env}
        p = subprocess.Popen(
            [*EDGEFLEET, *args], stdout=log, stderr=subprocess.STDOUT, env=full_env
        )
        log.close()
        self.started.append((name, p))
        return p

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {n}.log\n{self.log(n)}" for n, _ in self.started)

    def stop(self, proc: subprocess.Popen, timeout: float = 15.0) -> int:
        terminate(proc, timeout)
        return proc.returncode

    def stop_all(self) -> None:
        for _, p in reversed(self.started):
            self.stop(p)


@pytest.fixture(scope="module")
def broker():
    """A real Mosquitto of this module's own. Not the session one: fleets keep persistent
    sessions in the shared-subscription group, so a fleet from an earlier test would still
    be handed its share of device reports after it is gone."""
    with Mosquitto() as b:
        yield b


@pytest.fixture
def procs(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    p = Procs(logs)
    yield p
    p.stop_all()


@dataclass(frozen=True)
class FleetProc:
    url: str
    token: str
    fleet_pub: Path


def start_fleet(
    procs: Procs,
    data_dir: Path,
    broker_url: str,
    package_pub: Path,
    *,
    port: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> FleetProc:
    """``edgefleet fleet serve`` against ``broker_url`` with a known admin token and a
    pre-made command-signing key (devices trust its public half)."""
    from edgefleet.sdk import generate_keypair

    priv, pub = generate_keypair(data_dir / "fleet-key", "fleet")
    port = port or free_port()
    token = f"eft_{secrets.token_hex(8)}_{secrets.token_hex(16)}"
    env = {
        "EDGEFLEET_FLEET_DATA_DIR": str(data_dir / "fleet"),
        "EDGEFLEET_FLEET_BROKER_URL": broker_url,
        "EDGEFLEET_FLEET_TRUSTED_PACKAGE_KEYS": f'["{package_pub}"]',
        "EDGEFLEET_FLEET_BOOTSTRAP_ADMIN_TOKEN": token,
        "EDGEFLEET_FLEET_SIGNING_KEY": str(priv),
        "EDGEFLEET_FLEET_TICK_INTERVAL_S": "0.2",
        "EDGEFLEET_FLEET_MQTT_CLIENT_ID": f"fleet-e2e-{secrets.token_hex(4)}",
        **(extra_env or {}),
    }
    procs.spawn("fleet", ["fleet", "serve", "--host", "127.0.0.1", "--port", str(port)], env)
    return FleetProc(f"http://127.0.0.1:{port}", token, pub)


def agent_env(
    package_pub: Path,
    *,
    profile: str = "raspberry-pi-4",
    endpoint_port: int | None = None,
    telemetry_interval_s: float = 0.5,
) -> dict[str, str]:
    env = {
        "EDGEFLEET_AGENT_PACKAGE_KEYS": f'["{package_pub}"]',
        "EDGEFLEET_AGENT_PROFILE": profile,
        "EDGEFLEET_AGENT_TAGS": '["e2e"]',
        "EDGEFLEET_AGENT_TELEMETRY_INTERVAL_S": str(telemetry_interval_s),
        "EDGEFLEET_AGENT_RECONNECT_MAX_S": "1.0",
        "EDGEFLEET_AGENT_LOCAL_ENDPOINT": (
            f"127.0.0.1:{endpoint_port}" if endpoint_port else "127.0.0.1:0"
        ),
    }
    return env


def start_agent(
    procs: Procs,
    device_id: str,
    data_dir: Path,
    broker_url: str,
    fleet_pub: Path | None,
    env: dict[str, str],
) -> subprocess.Popen:
    args = [
        "agent",
        "run",
        "--device-id",
        device_id,
        "--broker",
        broker_url,
        "--data-dir",
        str(data_dir),
    ]
    if fleet_pub is not None:
        args += ["--fleet-key", str(fleet_pub)]
    return procs.spawn(device_id, args, env)
