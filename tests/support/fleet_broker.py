"""A real Mosquitto started on what ``edgefleet fleet broker-config`` generated.

Used by the fleet's hardening tests and ``benchmarks/hostile_devices.py``: devices are
provisioned through the fleet, the CLI writes passwd/acl/mosquitto.conf (and TLS files with
``--tls``), and Mosquitto runs that configuration on free loopback ports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .mosquitto import Mosquitto, free_port

__all__ = ["GeneratedBroker", "generate_broker"]


@dataclass
class GeneratedBroker:
    data_dir: Path
    fleet_user: str
    fleet_password: str
    device_passwords: dict[str, str]
    device_port: int
    fleet_port: int
    tls: bool
    broker: Mosquitto | None = None
    cli_output: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def mqtt_dir(self) -> Path:
        return self.data_dir / "mqtt"

    @property
    def ca(self) -> Path:
        return self.mqtt_dir / "tls" / "ca.crt"

    def device_url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.device_port}"

    def fleet_url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.fleet_port}"

    def start(self) -> GeneratedBroker:
        conf = (self.mqtt_dir / "mosquitto.conf").read_text()
        self.broker = Mosquitto(port=self.device_port, listeners=conf).start()
        return self

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> GeneratedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def generate_broker(
    data_dir: Path,
    devices: list[str],
    *,
    tls: bool = False,
    client_certs: bool = False,
    fleet_user: str = "fleet-main",
    max_payload_bytes: int | None = None,
) -> GeneratedBroker:
    """Provision ``devices`` in a fleet database under ``data_dir`` and run the real
    ``edgefleet fleet broker-config`` command on it (in-process, its own environment)."""
    from edgefleet.fleet import FleetService, FleetSettings
    from edgefleet.fleet._cli import app
    from typer.testing import CliRunner

    extra = {"max_payload_bytes": max_payload_bytes} if max_payload_bytes else {}
    settings = FleetSettings(
        data_dir=data_dir, mqtt_enabled=False, mqtt_client_id=fleet_user, **extra
    )
    gen = FleetService(settings)
    passwords = {d: gen.devices.provision(d, ["lab"])[2] for d in devices}
    gen.ctx.engine.dispose()
    device_port, fleet_port = free_port(), free_port()
    args = ["broker-config", "--device-port", str(device_port), "--fleet-port", str(fleet_port)]
    if tls:
        args.append("--tls")
    if client_certs:
        args.append("--client-certs")
    env = {
        "EDGEFLEET_FLEET_DATA_DIR": str(data_dir),
        "EDGEFLEET_FLEET_MQTT_CLIENT_ID": fleet_user,
    }
    if max_payload_bytes:
        env["EDGEFLEET_FLEET_MAX_PAYLOAD_BYTES"] = str(max_payload_bytes)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if result.exit_code != 0:
        raise RuntimeError(f"broker-config failed ({result.exit_code}): {result.output}")
    line = next(x for x in result.output.splitlines() if x.startswith("fleet MQTT password:"))
    return GeneratedBroker(
        data_dir=data_dir,
        fleet_user=fleet_user,
        fleet_password=line.split(":", 1)[1].strip(),
        device_passwords=passwords,
        device_port=device_port,
        fleet_port=fleet_port,
        tls=tls,
        cli_output=result.output,
    )
