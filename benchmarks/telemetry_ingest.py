"""Telemetry ingestion: device telemetry through a real Mosquitto into the fleet's store,
and the raw broker pipe (a subscriber that only counts) measured in the same run.

Publishers run in separate processes (many device ids; ``--samples`` samples per MQTT message,
default 1). Messages and samples (= stored rows) are counted and reported separately.
Last line: one JSON object with ingest_msgs_per_s, ingest_samples_per_s,
raw_broker_msgs_per_s, ratio.

    python benchmarks/telemetry_ingest.py --messages 100000 --samples 1 --json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def publisher(port: int, count: int, devices: int, offset: int, qos: int, samples: int) -> None:
    import paho.mqtt.client as mqtt
    from edgefleet.sdk import protocol as p

    payloads = []
    for i in range(devices):
        dev = f"bench-{offset + i:05d}"
        b = p.TelemetryBatch(
            device_id=dev,
            seq=0,
            samples=[
                p.TelemetrySample(
                    ts=p.utcnow(),
                    model="tiny@1.0.0",
                    calls=10,
                    errors=0,
                    latency_p95_ms=2.5,
                    cache_hits=3,
                    cache_misses=7,
                )
            ]
            * samples,
        )
        payloads.append((p.telemetry_topic(dev), p.encode(b)))
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{offset}")
    c.max_inflight_messages_set(2000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    last = None
    for i in range(count):
        topic, data = payloads[i % len(payloads)]
        last = c.publish(topic, data, qos=qos)
    last.wait_for_publish(300)
    c.loop_stop()
    c.disconnect()


QOS = 0  # telemetry is QoS 0 or 1 (DESIGN section 4); set by --qos
SAMPLES = 1  # samples per MQTT message; set by --samples


def wait_progress(count, target: int, stall_s: float = 5.0, poll_s: float = 0.01) -> None:
    """Wait until ``count() >= target`` or nothing moved for ``stall_s`` (lost messages)."""
    last, since = -1, time.monotonic()
    while True:
        n = count()
        if n >= target:
            return
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since > stall_s:
            return
        time.sleep(poll_s)


def run_publishers(port: int, total: int, procs: int) -> tuple[float, list]:
    ctx = mp.get_context("spawn")
    ps = [
        ctx.Process(target=publisher, args=(port, total // procs, 50, k * 50, QOS, SAMPLES))
        for k in range(procs)
    ]
    t0 = time.monotonic()
    for pr in ps:
        pr.start()
    return t0, ps


def raw_pipe(port: int, total: int, procs: int) -> float:
    """Messages per second a bare paho subscriber receives (no decoding, no store)."""
    import paho.mqtt.client as mqtt

    got = 0

    def on_message(c, u, m) -> None:
        nonlocal got
        got += 1

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="raw-counter")
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.subscribe("edgefleet/v1/devices/+/telemetry", 1)
    c.loop_start()
    time.sleep(0.5)
    t0, ps = run_publishers(port, total, procs)
    wait_progress(lambda: got, total)
    elapsed = time.monotonic() - t0
    for pr in ps:
        pr.join()
    c.loop_stop()
    c.disconnect()
    return got / elapsed, got


def replica(data_dir: str, broker_url: str, index: int, ready) -> None:
    """An extra fleet replica: ingestion only (no rollout engine), same store, own (unique,
    clean-session) client id;
    the shared subscription splits device messages between the replicas."""
    import threading

    from edgefleet.fleet import FleetService, FleetSettings

    service = FleetService(
        FleetSettings(
            data_dir=Path(data_dir),
            broker_url=broker_url,
            telemetry_batch_size=5000,
            run_engine=False,
        )
    ).start()
    ready.set()
    threading.Event().wait()  # until terminated
    service.stop()


def stored_rows(engine) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM telemetry")).scalar_one())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--replicas", type=int, default=2, help="fleet processes sharing ingestion")
    ap.add_argument("--qos", type=int, choices=(0, 1), default=0)
    ap.add_argument("--samples", type=int, default=1, help="telemetry samples per message")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    global QOS, SAMPLES
    QOS, SAMPLES = args.qos, args.samples

    from edgefleet.fleet import FleetService, FleetSettings

    from tests.support.mosquitto import Mosquitto

    total = (args.messages // args.publishers) * args.publishers
    ctx = mp.get_context("spawn")
    with Mosquitto() as broker:
        raw, raw_got = raw_pipe(broker.port, total, args.publishers)
        tmp = Path(tempfile.mkdtemp(prefix="telemetry-ingest-"))
        service = FleetService(
            FleetSettings(data_dir=tmp, broker_url=broker.url, telemetry_batch_size=5000)
        ).start()
        extra = []
        for k in range(1, args.replicas):
            ready = ctx.Event()
            pr = ctx.Process(target=replica, args=(str(tmp), broker.url, k, ready), daemon=True)
            pr.start()
            ready.wait(120)
            extra.append(pr)
        try:
            base = stored_rows(service.ctx.engine)
            t0, ps = run_publishers(broker.port, total, args.publishers)
            target = total * SAMPLES  # one stored row per sample
            wait_progress(lambda: stored_rows(service.ctx.engine) - base, target, poll_s=0.1)
            elapsed = time.monotonic() - t0
            for pr in ps:
                pr.join()
            stored = stored_rows(service.ctx.engine) - base
            rejected = service.metrics.get("edgefleet_fleet_mqtt_rejected_total", reason="overload")
        finally:
            for pr in extra:
                pr.terminate()
                pr.join(30)
            service.stop()
    ingest = stored / SAMPLES / elapsed  # whole messages (stored rows / samples per message)
    result = {
        "messages": total,
        "samples_per_message": SAMPLES,
        "stored_samples": stored,
        "replicas": args.replicas,
        "ingest_msgs_per_s": round(ingest),
        "ingest_samples_per_s": round(stored / elapsed),
        "raw_broker_msgs_per_s": round(raw),
        "raw_received": raw_got,
        "qos": QOS,
        "ratio": round(ingest / raw, 3),
        "dropped_overload_main": rejected,
        "goal_msgs_per_s": 20_000,
    }
    if not args.json:
        print(
            f"fleet ingest {ingest:,.0f} msg/s ({stored / elapsed:,.0f} samples/s) "
            f"vs raw broker pipe {raw:,.0f} msg/s",
            file=sys.stderr,
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
