"""Field use with no network: an agent whose broker is unreachable still serves inference
from its active slot, queues telemetry on disk, and drains it in order once the broker
appears (nothing lost, no reordering, the queue ends empty)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import urllib.request

import numpy as np
import pytest

from edgefleet.demo._local_fleet import wait_for
from tests.e2e.conftest import EDGEFLEET, agent_env, start_agent
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.packages import make_package, tiny_inputs, tiny_reference

pytestmark = [pytest.mark.slow, pytest.mark.broker]

DEVICE = "field-01"
OBSERVER = "e2e-observer"


def _queued(data_dir) -> list[str]:
    """Timestamps of the samples waiting in the agent's on-disk queue, oldest first."""
    path = data_dir / "telemetry.db"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute("SELECT body FROM samples ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # created but not initialised yet
        return []
    finally:
        db.close()
    return [json.loads(b)["ts"] for (b,) in rows]


def _predict(port: int, x: np.ndarray) -> np.ndarray:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/predict",
        json.dumps({"inputs": {"input": x.tolist()}}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return np.asarray(json.loads(r.read())["outputs"]["logits"], dtype=np.float32)


class Observer:
    """A persistent-session MQTT subscriber on the device's telemetry topic: it subscribes
    once, goes away, and the broker keeps every QoS 1 message for it until it returns."""

    def __init__(self, port: int) -> None:
        from edgefleet.sdk.protocol import telemetry_topic

        self.port, self.topic = port, telemetry_topic(DEVICE)
        self.messages: list[bytes] = []
        self.subscribed = False
        self.c = None

    def connect(self) -> None:
        import paho.mqtt.client as mqtt

        # A fresh client per connection (paho leaks a socket pair on a second loop_start);
        # the same client id and clean_session=False resume the broker-side session.
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=OBSERVER,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.c.on_message = lambda c, u, m: self.messages.append(m.payload)
        self.c.on_subscribe = lambda *a: setattr(self, "subscribed", True)
        self.c.connect("127.0.0.1", self.port, 30)
        self.c.loop_start()

    def subscribe(self) -> None:
        self.c.subscribe(self.topic, qos=1)
        wait_for(lambda: self.subscribed, 10, "the observer's subscription")

    def disconnect(self) -> None:
        if self.c is not None:
            self.c.disconnect()
            self.c.loop_stop()
            self.c = None


def test_offline_inference_then_ordered_drain(tmp_path, procs, signing_keys):
    from edgefleet.sdk.protocol import decode

    priv, pub = signing_keys
    pkg = make_package(tmp_path / "tiny-1.0.0.efpkg", seed=7, signing_key=priv)
    data_dir = tmp_path / DEVICE
    # Field provisioning without any fleet: install the signed package locally.
    subprocess.run(
        [
            *EDGEFLEET,
            "agent",
            "install",
            str(pkg),
            "--data-dir",
            str(data_dir),
            "--package-key",
            str(pub),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )

    (tmp_path / "mosquitto").mkdir()
    # Started as root, mosquitto drops to its own user, which cannot write its persistence
    # file into pytest's private tmp dir; the observer's session must survive the restart.
    broker = Mosquitto(port=free_port(), workdir=tmp_path / "mosquitto", extra_conf=["user root"])
    broker.start()
    observer = Observer(broker.port)
    observer.connect()
    observer.subscribe()
    observer.disconnect()
    broker.stop()  # persisted with the observer's session; now nothing listens on the port

    try:
        endpoint = free_port()
        env = agent_env(pub, endpoint_port=endpoint, telemetry_interval_s=0.2)
        start_agent(procs, DEVICE, data_dir, broker.url, None, env)

        # Inference from the active slot with no broker at all.
        x = tiny_inputs(4, seed=3)
        want = tiny_reference(x, seed=7)
        wait_for(lambda: _ok(endpoint), 60, "the agent's local endpoint")
        for _ in range(20):
            np.testing.assert_allclose(_predict(endpoint, x), want, atol=1e-4)
        wait_for(lambda: len(_queued(data_dir)) >= 15, 30, "telemetry queued on disk")
        offline = _queued(data_dir)
        assert not observer.messages

        broker.start()  # same port and persistence: the observer's session is back
        observer.connect()
        wait_for(lambda: not _queued(data_dir), 30, "the agent to drain its queue")

        def received() -> list:
            return [decode(observer.topic, m) for m in observer.messages]

        wait_for(
            lambda: sum(len(b.samples) for b in received()) >= len(offline),
            30,
            "the drained telemetry at the observer",
        )
        observer.disconnect()
        batches = received()
        seqs = [b.seq for b in batches]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # no gap, in order
        samples = [s for b in batches for s in b.samples]
        stamps = [s.ts for s in samples]
        assert stamps == sorted(stamps)
        # Every sample queued while offline arrived, first and in the same order.
        from datetime import datetime

        sent_first = [s.ts for s in samples[: len(offline)]]
        assert sent_first == [datetime.fromisoformat(t) for t in offline]
        assert all(b.dropped == 0 for b in batches)
        # The offline inference is in it: the 20 calls, attributed to the active model.
        assert sum(s.calls for s in samples) >= 20
        assert {s.model for s in samples if s.calls} == {"tiny@1.0.0"}
    finally:
        observer.disconnect()
        broker.stop()


def _ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=2) as r:
            return json.loads(r.read()).get("model") == "tiny@1.0.0"
    except OSError:
        return False
