"""One hostile device against the fleet: good devices must not lose a row, an update or time.

A real Mosquitto runs the configuration ``edgefleet fleet broker-config`` generates (device
listener with client ids bound to usernames, per-device ACLs, packet limits) and the real
fleet process (``edgefleet fleet serve``) runs on its fleet listener, loopback only. N good
devices (paho, client id = device id, as the agent) send rounds of telemetry (QoS 1), state
(retained) and deployment events for a rollout; each round's state and event are timed from
publish until they are visible in the fleet's database. Two phases in the same run:

- baseline: the good devices alone;
- attack: a provisioned hostile device also sends, as fast as it can, poison on all its
  topics (lone surrogates, NaN, 1e308, a 5,000-digit integer, deep nesting, wrong types),
  16 MiB and 64 MiB PUBLISH packets (streamed over a raw socket until the broker cuts it) and
  client-id takeover attempts (its own credentials, a good device's client id).

    python benchmarks/hostile_devices.py --json
    python benchmarks/hostile_devices.py --tls --json   # every connection over verified TLS

Last line: one JSON object with good_rows_landed_ratio, good_updates_landed_ratio,
ingest_restarts, reader_alive_at_end, fleet_peak_rss_mb, good_latency_p95_s (attack),
baseline_latency_p95_s, latency_ratio, takeover_disconnects, the attack counts and the host.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _harness import emit, host, parser  # noqa: E402 (after sys.path)

from tests.support.processes import stop_process  # noqa: E402

ADMIN = "eft_00000000000000ee_hostile-bench-admin"
POISON = [
    '"\\ud800"',
    '"\\udfff\\ud800"',
    "NaN",
    "Infinity",
    "1e308",
    "-1e308",
    "1" * 5000,
    "[" * 3000 + "]" * 3000,
    '{"a": ' * 400 + "1" + "}" * 400,
    "[1, 2]",
    '{"x": 1}',
]


def _p95(xs: list[float]) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


class Good:
    """A good device as the agent connects: client id = username = device id."""

    def __init__(self, dev: str, password: str, port: int, ca: Path | None) -> None:
        import paho.mqtt.client as mqtt

        self.id = dev
        self.disconnects = 0
        self.up = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev, clean_session=False)
        self.c.username_pw_set(dev, password)
        if ca is not None:
            self.c.tls_set(ca_certs=str(ca))
        self.c.on_connect = lambda c, u, f, rc, p: rc.is_failure or self.up.set()
        self.c.on_disconnect = self._gone
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()

    def _gone(self, c, u, f, rc, p) -> None:
        self.disconnects += 1
        self.up.clear()

    def send_round(self, r: int) -> None:
        from edgefleet.sdk import protocol as p

        now = datetime.now(UTC)
        sample = p.TelemetrySample(ts=now, model="bench@1.0.0", calls=10, latency_p95_ms=4.0)
        batch = p.TelemetryBatch(device_id=self.id, seq=r, samples=[sample])
        self.c.publish(p.telemetry_topic(self.id), p.encode(batch), qos=1)
        st = p.State(device_id=self.id, online=True, agent_version=f"r{r}")
        self.c.publish(p.state_topic(self.id), p.encode(st), qos=1, retain=True)
        ev = p.DeploymentEvent(
            device_id=self.id,
            deployment_id="rollout-1",
            state="DOWNLOADING" if r % 2 else "VERIFYING",
            reason=f"r{r}",
        )
        self.c.publish(p.events_topic(self.id), p.encode(ev), qos=1)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class Hostile:
    """Poison, huge packets and takeover attempts until stopped; counts what it sent. Runs in
    its own process (:func:`_attack`), so its CPU and GIL use do not slow the measurement."""

    def __init__(self, dev, password, port, victims: list[str], ca: Path | None, stop_ev) -> None:
        self.dev, self.password, self.port, self.victims = dev, password, port, victims
        self.stop_ev = stop_ev
        self.tls = None
        if ca is not None:
            from edgefleet.fleet import client_context

            self.tls = client_context(ca)
        self.sent = {"poison": 0, "huge": 0, "takeover": 0, "huge_cut_at_mb": []}

    def _connect(self, client_id: str) -> socket.socket:
        from edgefleet.fleet._mqtt_wire import connect_packet

        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        if self.tls is not None:
            s = self.tls.wrap_socket(s, server_hostname="127.0.0.1")
        s.sendall(
            connect_packet(
                client_id,
                clean_session=True,
                keepalive=30,
                username=self.dev,
                password=self.password,
            )
        )
        ack = s.recv(4)
        if ack != b"\x20\x02\x00\x00":
            s.close()
            raise ConnectionError(f"CONNACK {ack!r}")
        return s

    @staticmethod
    def _publish(topic: str, payload: bytes, qos: int = 0) -> bytes:
        from edgefleet.fleet._mqtt_wire import _str, _varint

        body = _str(topic) + (b"\x00\x01" if qos else b"") + payload
        return bytes([0x30 | qos << 1]) + _varint(len(body)) + body

    def _poison(self, s: socket.socket, i: int) -> None:
        from edgefleet.sdk import protocol as p

        value = POISON[i % len(POISON)]
        dev = self.dev
        docs = [
            (p.telemetry_topic(dev), json.loads(p.encode(p.TelemetryBatch(
                device_id=dev, seq=i, samples=[p.TelemetrySample(ts=datetime.now(UTC))]))),
             ("samples", 0, "latency_p95_ms")),
            (p.telemetry_topic(dev), json.loads(p.encode(p.TelemetryBatch(
                device_id=dev, seq=i, samples=[p.TelemetrySample(ts=datetime.now(UTC))]))),
             ("samples", 0, "model")),
            (p.state_topic(dev), json.loads(p.encode(p.State(device_id=dev, online=True))),
             ("agent_version",)),
            (p.events_topic(dev), json.loads(p.encode(p.DeploymentEvent(
                device_id=dev, deployment_id="rollout-1", state="FAILED"))), ("reason",)),
            (p.inventory_topic(dev), json.loads(p.encode(p.Inventory(
                device_id=dev, profile="x"))), ("model",)),
        ]  # fmt: skip
        out = b""
        for topic, doc, path in docs:
            target = doc
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = "@@POISON@@"
            payload = json.dumps(doc).replace('"@@POISON@@"', value).encode()
            out += self._publish(topic, payload, qos=i % 2)
        s.sendall(out)
        self.sent["poison"] += len(docs)

    def _huge(self, mib: int) -> None:
        """A PUBLISH declaring ``mib`` MiB, streamed until the broker cuts the connection."""
        from edgefleet.fleet._mqtt_wire import _str, _varint
        from edgefleet.sdk import protocol as p

        s = self._connect(self.dev)
        size = mib * 1024 * 1024
        topic = _str(p.telemetry_topic(self.dev))
        s.sendall(b"\x30" + _varint(len(topic) + size) + topic)
        chunk, sent = b"x" * (256 * 1024), 0
        try:
            while sent < size and not self.stop_ev.is_set():
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        finally:
            s.close()
        self.sent["huge"] += 1
        self.sent["huge_cut_at_mb"].append(round(sent / 2**20, 2))

    def _takeover(self, victim: str) -> None:
        try:
            s = self._connect(victim)  # our credentials, a good device's client id
            time.sleep(0.05)
            s.close()
        except (OSError, ConnectionError):
            pass
        self.sent["takeover"] += 1

    def run(self) -> None:
        i = 0
        s = None
        while not self.stop_ev.is_set():
            try:
                if s is None:
                    s = self._connect(self.dev)
                self._poison(s, i)
                if i % 40 == 10:
                    self._huge(16 if (i // 40) % 2 == 0 else 64)
                if i % 10 == 5:
                    self._takeover(self.victims[i % len(self.victims)])
            except (OSError, ConnectionError):
                if s is not None:
                    s.close()
                s = None
            i += 1
            time.sleep(0.005)
        if s is not None:
            s.close()


def _attack(args: tuple, stop_ev, out) -> None:
    sys.path.insert(0, str(ROOT))
    h = Hostile(*args, stop_ev)
    h.run()
    out.put(h.sent)


def _setup_rollout(data_dir: Path, devices: list[str]) -> None:
    """A DRAFT rollout holding the good devices, so their deployment events are stored
    (a DRAFT rollout never sends commands: the events are the devices' own)."""
    from edgefleet.fleet._db import ModelVersion, Rollout, RolloutDevice, make_engine
    from sqlalchemy.orm import Session

    engine = make_engine(f"sqlite:///{(data_dir / 'fleet.db').resolve()}")
    with Session(engine) as db:
        mv = ModelVersion(
            name="bench", version="1.0.0", digest="0" * 64, file_sha256="0" * 64,
            size=1, path="/dev/null", manifest={},
        )  # fmt: skip
        db.add(mv)
        db.flush()
        ro = Rollout(id=1, name="bench", model_version_id=mv.id, spec={}, target={},
                     waves=[devices])  # fmt: skip
        db.add(ro)
        db.flush()
        for d in devices:
            db.add(RolloutDevice(rollout_id=1, device_id=d, wave=0, state="QUEUED"))
        db.commit()
    engine.dispose()


class Watcher:
    """Reads the fleet's SQLite database (read-only) for what has landed."""

    def __init__(self, db: Path) -> None:
        import sqlite3

        self.conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)

    def landed(self, r: int) -> tuple[set[str], set[str]]:
        tag = f"r{r}"
        states = {
            d
            for (d,) in self.conn.execute("SELECT id FROM devices WHERE agent_version = ?", (tag,))
        }
        events = {d for (d,) in self.conn.execute(
            "SELECT device_id FROM rollout_devices WHERE detail = ?", (tag,))}  # fmt: skip
        return states, events

    def rows(self, devices: list[str]) -> int:
        marks = ",".join("?" * len(devices))
        q = f"SELECT count(*) FROM telemetry WHERE device_id IN ({marks})"
        return self.conn.execute(q, devices).fetchone()[0]


def _phase(goods, watcher, rounds, first, interval, latencies, missed) -> None:
    for r in range(first, first + rounds):
        t0 = time.monotonic()
        for g in goods:
            g.send_round(r)
        want = {g.id for g in goods}
        seen_s: set[str] = set()
        seen_e: set[str] = set()
        deadline = t0 + 10.0
        while time.monotonic() < deadline and (seen_s != want or seen_e != want):
            states, events = watcher.landed(r)
            now = time.monotonic() - t0
            arrived = len((states & want) - seen_s) + len((events & want) - seen_e)
            latencies.extend([now] * arrived)
            seen_s |= states & want
            seen_e |= events & want
            time.sleep(0.01)
        missed[0] += len(want - seen_s) + len(want - seen_e)
        time.sleep(max(0.0, interval - (time.monotonic() - t0)))


def main() -> int:
    ap = parser(__doc__, devices=(8, "good devices"), rounds=(40, "rounds per phase"),
                interval=(0.25, "seconds between rounds"),
                tls=(False, "TLS listeners (broker-config --tls)"))  # fmt: skip
    args = ap.parse_args()

    import httpx
    import psutil

    from tests.support.fleet_broker import generate_broker
    from tests.support.mosquitto import free_port

    work = Path(tempfile.mkdtemp(prefix="hostile-"))
    goods_ids = [f"good-{i}" for i in range(args.devices)]
    gen = generate_broker(work / "fleet", [*goods_ids, "evil"], tls=args.tls)
    ca = gen.ca if args.tls else None
    _setup_rollout(gen.data_dir, goods_ids)
    port = free_port()
    env = dict(
        os.environ,
        EDGEFLEET_FLEET_DATA_DIR=str(gen.data_dir),
        EDGEFLEET_FLEET_BROKER_URL=gen.fleet_url(),
        EDGEFLEET_FLEET_MQTT_CLIENT_ID=gen.fleet_user,
        EDGEFLEET_FLEET_MQTT_USERNAME=gen.fleet_user,
        EDGEFLEET_FLEET_MQTT_PASSWORD=gen.fleet_password,
        EDGEFLEET_FLEET_BOOTSTRAP_ADMIN_TOKEN=ADMIN,
        EDGEFLEET_FLEET_TELEMETRY_FLUSH_INTERVAL_S="0.05",
        EDGEFLEET_FLEET_RUN_ENGINE="false",
    )
    if ca is not None:
        env["EDGEFLEET_FLEET_MQTT_TLS_CA"] = str(ca)
    fleet = None
    goods: list[Good] = []
    hostile = None
    rss_peak = [0.0]
    stop_sampling = threading.Event()
    stack = contextlib.ExitStack()
    try:
        gen.start()
        log = stack.enter_context(open(work / "fleet.log", "wb"))
        fleet = subprocess.Popen(
            [sys.executable, "-m", "edgefleet", "fleet", "serve", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).json()["mqtt_connected"]:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            if fleet.poll() is not None:
                raise RuntimeError((work / "fleet.log").read_text()[-3000:])
            time.sleep(0.2)
        else:
            raise RuntimeError("the fleet did not come up")
        proc = psutil.Process(fleet.pid)

        def sample() -> None:
            while not stop_sampling.is_set():
                try:
                    rss_peak[0] = max(rss_peak[0], proc.memory_info().rss / 2**20)
                except psutil.Error:
                    return
                time.sleep(0.05)

        threading.Thread(target=sample, daemon=True).start()
        goods = [Good(d, gen.device_passwords[d], gen.device_port, ca) for d in goods_ids]
        for g in goods:
            if not g.up.wait(10):
                raise RuntimeError(f"{g.id} did not connect")
        watcher = Watcher(gen.data_dir / "fleet.db")

        # Warm-up rounds (first validations build schemas, SQLite warms up): not timed.
        warm = 5
        _phase(goods, watcher, warm, 0, args.interval, [], [0])
        base_lat: list[float] = []
        base_missed = [0]
        _phase(goods, watcher, args.rounds, warm, args.interval, base_lat, base_missed)
        disconnects_before = sum(g.disconnects for g in goods)

        ctx = mp.get_context("spawn")
        stop_attack, attack_out = ctx.Event(), ctx.Queue()
        attack_args = ("evil", gen.device_passwords["evil"], gen.device_port, goods_ids, ca)
        hostile = ctx.Process(target=_attack, args=(attack_args, stop_attack, attack_out))
        hostile.start()
        time.sleep(2.0)  # the attack is under way before the first measured round
        att_lat: list[float] = []
        att_missed = [0]
        first = warm + args.rounds
        _phase(goods, watcher, args.rounds, first, args.interval, att_lat, att_missed)
        stop_attack.set()
        sent = attack_out.get(timeout=60)
        hostile.join(30)
        takeover_disconnects = sum(g.disconnects for g in goods) - disconnects_before

        sent_rows = (warm + 2 * args.rounds) * len(goods)
        deadline = time.monotonic() + 10
        while watcher.rows(goods_ids) < sent_rows and time.monotonic() < deadline:
            time.sleep(0.1)
        rows = watcher.rows(goods_ids)
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        health = httpx.get(f"{base}/health", timeout=5).json()

        def metric(name: str) -> float:
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith(name) and not line.startswith("#")
            )

        updates = 2 * 2 * args.rounds * len(goods)  # state + event per timed round
        base_p95, att_p95 = _p95(base_lat), _p95(att_lat)
        result = {
            "tls": args.tls,
            "good_devices": len(goods),
            "rounds_per_phase": args.rounds,
            "good_rows_sent": sent_rows,
            "good_rows_landed": rows,
            "good_rows_landed_ratio": round(rows / sent_rows, 4),
            "good_updates_sent": updates,
            "good_updates_landed_ratio": round(
                (updates - base_missed[0] - att_missed[0]) / updates, 4
            ),
            "ingest_restarts": int(metric("edgefleet_fleet_ingest_restarts_total")),
            "reader_alive_at_end": bool(health["mqtt_connected"]) and fleet.poll() is None,
            "fleet_peak_rss_mb": round(rss_peak[0], 1),
            "baseline_latency_p95_s": round(base_p95, 3) if base_p95 is not None else None,
            "good_latency_p95_s": round(att_p95, 3) if att_p95 is not None else None,
            "latency_ratio": round(att_p95 / base_p95, 2) if base_p95 and att_p95 else None,
            "takeover_disconnects": takeover_disconnects,
            "attack_poison_messages": sent["poison"],
            "attack_huge_packets": sent["huge"],
            "attack_huge_cut_at_mb_max": max(sent["huge_cut_at_mb"], default=None),
            "attack_takeover_attempts": sent["takeover"],
            "fleet_rejected_malformed": int(
                metric('edgefleet_fleet_mqtt_rejected_total{reason="malformed"}')
            ),
            "fleet_poison_dropped_in_store": int(metric("edgefleet_fleet_poison_dropped_total")),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "host": host(),
            "goals": {
                "good_rows_landed_ratio": 1.0,
                "fleet_peak_rss_mb": 250,
                "latency_ratio_max": 2.0,
                "takeover_disconnects": 0,
            },
        }
    finally:
        stop_sampling.set()
        if hostile is not None and hostile.is_alive():
            hostile.terminate()
            hostile.join(10)
        for g in goods:
            g.close()
        if fleet is not None:
            stop_process(fleet, 15)
        gen.stop()
        stack.close()
    return emit(
        result,
        args.json,
        f"rows {result['good_rows_landed_ratio']}, p95 {result['good_latency_p95_s']}s vs "
        f"{result['baseline_latency_p95_s']}s, rss {result['fleet_peak_rss_mb']} MB",
    )


if __name__ == "__main__":
    raise SystemExit(main())
