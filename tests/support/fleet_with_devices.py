"""Bytes a device really downloads: Mosquitto, an ``edgefleet fleet serve`` process and
``edgefleet agent run`` processes, with a byte-counting TCP proxy as the fleet's public URL,
so every HTTP byte a device fetches (headers included) is counted on the wire.

Used by ``tests/e2e/test_device_download.py`` and ``benchmarks/device_download.py``:

    with FleetWithDevices(tmp, priv, pub, {"dev-x86": "x86_64-cpu"}) as f:
        f.upload(package)
        wire = f.deploy("dev-x86", "name", "1.0.0")   # bytes down for that device
"""

from __future__ import annotations

import json
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from tests.support.mosquitto import Mosquitto, free_port
from tests.support.wire import ByteCountingProxy

__all__ = ["FleetWithDevices", "active_slot_dir", "endpoint_predict", "measure_device_download"]


def active_slot_dir(data_dir: Path) -> Path | None:
    from edgefleet.device_agents import ModelStore

    return ModelStore(data_dir / "store").active_dir()


def endpoint_predict(port: int, inputs: dict) -> dict:
    body = json.dumps({"inputs": {k: v.tolist() for k, v in inputs.items()}}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/predict", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


class FleetWithDevices:
    """A real fleet + broker + one agent process per (device id -> profile)."""

    def __init__(self, root: Path, priv: Path, pub: Path, devices: dict[str, str]) -> None:
        self.root, self.priv, self.pub, self.devices = root, priv, pub, devices
        self.dirs = {d: root / d for d in devices}
        self.ports = {d: free_port() for d in devices}
        self._stack = ExitStack()

    def __enter__(self) -> FleetWithDevices:
        from edgefleet.fleet import FleetClient

        from edgefleet.demo._local_fleet import wait_for
        from tests.e2e.conftest import Procs, agent_env, start_agent, start_fleet

        try:
            (self.root / "logs").mkdir(parents=True, exist_ok=True)
            self.procs = Procs(self.root / "logs")
            self._stack.callback(self.procs.stop_all)
            broker = self._stack.enter_context(Mosquitto())
            fleet_port = free_port()
            self.proxy = self._stack.enter_context(ByteCountingProxy("127.0.0.1", fleet_port))
            fleet = start_fleet(
                self.procs, self.root, broker.url, self.pub, port=fleet_port,
                extra_env={"EDGEFLEET_FLEET_PUBLIC_URL": self.proxy.url},
            )  # fmt: skip
            self.client = FleetClient(fleet.url, fleet.token)
            self._stack.callback(self.client.close)
            wait_for(self._healthy, 60, "the fleet process to answer")
            for dev, profile in self.devices.items():
                env = agent_env(self.pub, profile=profile, endpoint_port=self.ports[dev])
                start_agent(self.procs, dev, self.dirs[dev], broker.url, fleet.fleet_pub, env)
            wait_for(self._registered, 90, "agents registered and online")
        except BaseException:
            self._stack.close()
            raise
        return self

    def _healthy(self) -> bool:
        try:
            self.client.health()
            return True
        except Exception:
            return False

    def _registered(self) -> bool:
        known = {d["id"]: d for d in self.client.devices()}
        return all(known.get(d, {}).get("online") for d in self.devices)

    def upload(self, package: Path) -> dict:
        return self.client.upload(package)

    def deploy(self, device: str, name: str, version: str, timeout: float = 120) -> int:
        """Roll ``name@version`` out to ``device`` alone; the bytes it downloaded."""
        from edgefleet.demo._local_fleet import wait_for

        self.proxy.reset()
        ro = self.client.create_rollout(
            {
                "name": f"{name}-{version}-{device}",
                "model": name,
                "version": version,
                "target": {"device_ids": [device]},
                "spec": {"strategy": "all_at_once", "health_window_s": 0.5},
                "start": True,
            }
        )
        done = self.client.wait_rollout(ro["id"], timeout=timeout)
        states = [d["state"] for d in done["devices"]]
        if states != ["ACTIVE"]:
            raise AssertionError(f"{device}: rollout ended {states}: {done}\n{self.procs.logs()}")
        wait_for(lambda: active_slot_dir(self.dirs[device]) is not None, 30, "slot active")
        time.sleep(0.2)  # the last response bytes may trail the ACTIVE event
        return self.proxy.down

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def measure_device_download(
    package: Path, priv: Path, pub: Path, devices: dict[str, str], workdir: Path
) -> dict:
    """Deploy the signed ``package`` (made with key ``priv``) to one real agent per
    (device id -> profile), one after the other, through a real fleet and Mosquitto; return
    ``device_download_ratio`` (the worst device's wire bytes over the bytes of the
    artifact(s) it runs) and the per-device figures. For benchmarks."""
    from edgefleet.sdk import open_package, select_artifacts

    with open_package(package) as p:
        name, version = p.manifest.name, p.manifest.version
        plan = {d: select_artifacts(p.manifest, profile=prof) for d, prof in devices.items()}
    per_device = {}
    with FleetWithDevices(workdir, priv, pub, devices) as fleet:
        fleet.upload(package)
        for dev in devices:
            wire = fleet.deploy(dev, name, version)
            arts = plan[dev]
            size = sum(a.size + sum(f.size for f in a.files) for a in arts)
            with open_package(active_slot_dir(fleet.dirs[dev])) as held:
                present = [a.name for a in held.present_artifacts()]
            per_device[dev] = {
                "profile": devices[dev],
                "artifacts": [a.name for a in arts],
                "artifact_bytes": size,
                "wire_bytes": wire,
                "ratio": round(wire / size, 4),
                "artifacts_on_device": present,
            }
    worst = max(per_device.values(), key=lambda d: d["ratio"])
    return {
        "device_download_ratio": worst["ratio"],
        "whole_package_ratio": round(package.stat().st_size / worst["artifact_bytes"], 3),
        "package_bytes": package.stat().st_size,
        "devices": per_device,
    }
