"""A small protocol-speaking fake device for fleet tests (no agent dependency).

It connects to MQTT as its own user, publishes retained state/inventory, verifies signed
commands, downloads the package over HTTP from the fleet, verifies it and runs the real
golden-input smoke test in onnxruntime, then reports deployment events.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import httpx
import numpy as np
import paho.mqtt.client as mqtt
from edgefleet.sdk import TrustPolicy, open_package
from edgefleet.sdk import protocol as p


class FakeDevice:
    def __init__(
        self,
        device_id: str,
        broker_port: int,
        fleet_pub,
        package_pub,
        *,
        profile: str = "x86_64-cpu",
        tags: tuple[str, ...] = (),
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.id = device_id
        self.profile, self.tags = profile, list(tags)
        self.verifier = p.CommandVerifier(device_id, [fleet_pub])
        self.package_pub = package_pub
        self.active: str | None = None
        self.received: list[p.Command] = []
        self.rejected: list[str] = []
        self.connected = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{device_id}", clean_session=False
        )
        if username:
            self.client.username_pw_set(username, password)
        will = p.encode(p.State(device_id=device_id, online=False))
        self.client.will_set(p.state_topic(device_id), will, qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.port = broker_port
        self._work = Path(tempfile.mkdtemp(prefix=f"fake-{device_id}-"))

    def start(self) -> FakeDevice:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(10), f"{self.id} did not connect"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        if rc.is_failure:
            return
        client.subscribe(p.cmd_topic(self.id), 1)
        inv = p.Inventory(device_id=self.id, profile=self.profile, tags=self.tags)
        client.publish(p.inventory_topic(self.id), p.encode(inv), 1, True)
        self.publish_state()
        self.connected.set()

    def publish_state(self, deploying: str | None = None) -> None:
        slots = []
        if self.active:
            name, version = self.active.split("@")
            slots = [
                p.SlotInfo(
                    slot="A",
                    package_name=name,
                    package_version=version,
                    digest="0" * 64,
                    active=True,
                )
            ]
        st = p.State(
            device_id=self.id,
            online=True,
            agent_version="fake-1",
            active_slot="A" if self.active else None,
            slots=slots,
        )
        self.client.publish(p.state_topic(self.id), p.encode(st), 1, True)

    def event(self, dep: str, state: str, reason: str = "", **kw) -> None:
        ev = p.DeploymentEvent(
            device_id=self.id, deployment_id=dep, state=state, reason=reason, **kw
        )
        self.client.publish(p.events_topic(self.id), p.encode(ev), 1, False)

    def telemetry(
        self, model: str, calls: int, errors: int, p95: float, seq: int = 0, generation=None
    ) -> None:
        """``generation``: GenerationTelemetry fields, as a generative model's agent sends."""
        from datetime import UTC, datetime

        s = p.TelemetrySample(
            ts=datetime.now(UTC),
            model=model,
            calls=calls,
            errors=errors,
            latency_p95_ms=p95,
            cache_hits=calls // 2,
            cache_misses=calls - calls // 2,
            generation=p.GenerationTelemetry(**generation) if generation else None,
        )
        b = p.TelemetryBatch(device_id=self.id, seq=seq, samples=[s])
        self.client.publish(p.telemetry_topic(self.id), p.encode(b), 1, False)

    def _on_message(self, client, userdata, m) -> None:
        try:
            cmd = p.decode(m.topic, m.payload)
            self.verifier.verify(cmd)
        except p.ProtocolError as e:
            self.rejected.append(str(e))
            return
        except p.CommandRejected as e:
            self.rejected.append(str(e))
            ack = p.CommandAck(
                device_id=self.id,
                command_id=cmd.command_id,
                action=cmd.type,
                accepted=False,
                reason=e.reason,
                detail=str(e),
            )
            self.client.publish(p.events_topic(self.id), p.encode(ack), 1, False)
            return
        self.received.append(cmd)
        if isinstance(cmd, p.DeployCommand):
            threading.Thread(target=self._deploy, args=(cmd,), daemon=True).start()
        elif isinstance(cmd, p.RollbackCommand):
            self.active = None
            self.publish_state()

    def _deploy(self, cmd: p.DeployCommand) -> None:
        dep = cmd.deployment_id
        self.event(dep, "DOWNLOADING")
        path = self._work / f"{cmd.package_name}-{cmd.package_version}.efpkg"
        try:
            r = httpx.get(cmd.artifact_url, timeout=10)
            r.raise_for_status()
            path.write_bytes(r.content)
            self.event(dep, "VERIFYING")
            with open_package(path, TrustPolicy.device(self.package_pub)) as pkg:
                if pkg.manifest.task == "text-generation":  # the SDK's real smoke test
                    from edgefleet.sdk import load

                    self.event(dep, "ACTIVATING")
                    with load(pkg) as model:
                        result = model.smoke_test()
                    if not result.passed:
                        self.event(dep, "FAILED", f"smoke test: {result.detail}")
                        return
                    self._activated(dep, cmd)
                    return
                import onnxruntime as ort

                art = pkg.manifest.artifacts[0]
                self.event(dep, "ACTIVATING")
                sess = ort.InferenceSession(
                    str(pkg.artifact_path(art)), providers=["CPUExecutionProvider"]
                )
                got = sess.run(None, pkg.golden_inputs())[0]
                want = pkg.golden_outputs(art)["logits"]
                if not np.allclose(got, want, atol=art.golden_atol, rtol=art.golden_rtol):
                    self.event(dep, "FAILED", "smoke test: outputs differ from golden outputs")
                    return
        except Exception as e:  # report, like the agent would
            self.event(dep, "FAILED", f"{type(e).__name__}: {e}")
            return
        self._activated(dep, cmd)

    def _activated(self, dep: str, cmd: p.DeployCommand) -> None:
        self.active = f"{cmd.package_name}@{cmd.package_version}"
        self.event(dep, "ACTIVE")
        self.publish_state()
