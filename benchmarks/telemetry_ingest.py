"""Telemetry ingestion: device telemetry through a real Mosquitto into the fleet's store,
and the raw broker pipe (a subscriber that only counts) measured in the same run.

The load generator is not the bottleneck: each publisher process encodes real protocol
TelemetryBatch messages (many device ids, increasing seq per device) as complete MQTT
PUBLISH packets once, then writes them over a plain socket in large chunks. The same
packets are sent twice: to a counting subscriber (the raw pipe) and to the fleet
(``--replicas`` fleet processes splitting a shared subscription, one SQLite store).
A message counts as ingested only once its rows are committed (rows counted in the
database). CPU seconds of the fleet processes and of Mosquitto are reported too, so a
figure taken on a loaded machine can be read as a per-message cost.

    python benchmarks/telemetry_ingest.py --messages 200000 --samples 1 --json
    python benchmarks/telemetry_ingest.py --compare-paho 30000 --json  # + the old paho path
    python benchmarks/telemetry_ingest.py --messages 300000 --rate 21000 --json  # paced

Last line: one JSON object with ingest_msgs_per_s, ingest_samples_per_s,
raw_broker_msgs_per_s, ratio and the settings used.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _harness import emit, host, parser  # noqa: E402 (after sys.path)

CHUNK = 256 * 1024  # bytes per socket write


def _publish_packet(topic: str, payload: bytes, qos: int, pid: int) -> bytes:
    from edgefleet.fleet._mqtt_wire import _str, _varint

    body = _str(topic) + (pid.to_bytes(2, "big") if qos else b"") + payload
    return bytes([0x30 | (qos << 1)]) + _varint(len(body)) + body


def _connect(port: int, client_id: str) -> socket.socket:
    from edgefleet.fleet._mqtt_wire import connect_packet

    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(connect_packet(client_id, clean_session=True, keepalive=60, username="", password=""))
    ack = s.recv(4)
    if ack[:1] != b"\x20" or ack[-1:] != b"\x00":
        raise RuntimeError(f"CONNACK expected, got {ack!r}")
    return s


class _Drain(threading.Thread):
    """Reads what the broker sends a publisher (PUBACKs, 4 bytes each) until it closes.

    Closing a socket with unread input makes Linux send RST, and the broker then drops what
    it has not read yet: a publisher waits for its PUBACKs and the broker's close instead.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock, self.received = sock, 0

    def run(self) -> None:
        try:
            while data := self.sock.recv(1 << 16):
                self.received += len(data)
        except OSError:
            pass


def publisher(
    index: int, count: int, devices: int, qos: int, samples: int, rate: float, jobs, done
):
    """Encode ``count`` messages once, then send them all each time a port arrives on ``jobs``."""
    from edgefleet.sdk import protocol as p

    now = p.utcnow()
    sample = p.TelemetrySample(
        ts=now,
        model="tiny@1.0.0",
        calls=10,
        errors=0,
        latency_p50_ms=1.5,
        latency_p95_ms=2.5,
        latency_p99_ms=4.0,
        cache_hits=3,
        cache_misses=7,
    )
    packets = []
    for i in range(count):
        dev = f"bench-{index:02d}-{i % devices:05d}"
        msg = p.TelemetryBatch(device_id=dev, seq=i // devices, samples=[sample] * samples)
        packets.append(_publish_packet(p.telemetry_topic(dev), p.encode(msg), qos, i % 65535 + 1))
    blobs, cur, n_in = [], [], []
    size = 0
    for pk in packets:
        cur.append(pk)
        size += len(pk)
        if size >= CHUNK:
            blobs.append(b"".join(cur))
            n_in.append(len(cur))
            cur, size = [], 0
    if cur:
        blobs.append(b"".join(cur))
        n_in.append(len(cur))
    done.put(("ready", index))
    while (job := jobs.get()) is not None:
        port, limit = job  # limit: stop after about ``limit`` messages (None: all)
        s = _connect(port, f"bench-pub-{index}")
        drain = _Drain(s)
        drain.start()
        t0, sent = time.monotonic(), 0
        for blob, n in zip(blobs, n_in, strict=True):
            if limit is not None and sent >= limit:
                break
            s.sendall(blob)
            sent += n
            if rate:  # pace this publisher to its share of the offered rate
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        deadline = time.monotonic() + 300
        while qos and drain.received < 4 * sent and time.monotonic() < deadline:
            time.sleep(0.01)  # every PUBACK in: the broker has all messages
        s.sendall(b"\xe0\x00")  # DISCONNECT after the last message
        s.shutdown(socket.SHUT_WR)
        drain.join(300)  # the broker reads up to the DISCONNECT, then closes
        s.close()
        done.put(("sent", index, time.monotonic() - t0, sent))


class RawCounter:
    """A bare subscriber that only counts PUBLISH packets (the fleet's own packet splitter)."""

    def __init__(self, port: int) -> None:
        from edgefleet.fleet._mqtt_wire import subscribe_packet

        self.got = 0
        self.sock = _connect(port, "raw-counter")
        self.sock.sendall(subscribe_packet(1, [("edgefleet/v1/devices/+/telemetry", 0)]))
        self.sock.recv(5)  # SUBACK
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from edgefleet.fleet._mqtt_wire import split_packets

        pending, pubs, acks, others = b"", [], [], []
        while data := self.sock.recv(1 << 18):
            pending += data
            pending = pending[split_packets(pending, pubs, acks, others) :]
            self.got += len(pubs)
            pubs.clear()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def wait_progress(count, target: int, stall_s: float = 10.0, poll_s: float = 0.05) -> float:
    """Wait until ``count() >= target`` or nothing moved for ``stall_s`` (lost messages);
    return the time of the last progress."""
    last, since = -1, time.monotonic()
    while True:
        n = count()
        if n != last:
            last, since = n, time.monotonic()
        if n >= target:
            return since
        if time.monotonic() - since > stall_s:
            return since
        time.sleep(poll_s)


def use_paho_path() -> None:
    """The previous ingestion path, for comparison: telemetry through paho's on_message."""
    import functools

    import edgefleet.fleet._service as service_module

    service_module.MqttBridge = functools.partial(  # type: ignore[misc]
        service_module.MqttBridge, fast_telemetry=False
    )


def replica(data_dir: str, broker_url: str, index: int, batch: int, paho: bool, ready) -> None:
    """An extra fleet replica: ingestion only (no rollout engine), same store; the shared
    subscription splits device telemetry between the replicas."""
    from edgefleet.fleet import FleetService, FleetSettings

    if paho:
        use_paho_path()

    service = FleetService(
        FleetSettings(
            data_dir=Path(data_dir),
            broker_url=broker_url,
            telemetry_batch_size=batch,
            mqtt_client_id=f"bench-fleet-{index}",
            run_engine=False,
        )
    ).start()
    ready.set()
    threading.Event().wait()  # until terminated
    service.stop()


def stored_rows(engine) -> int:
    """Committed rows so far (max id: cheaper than count(*); nothing is deleted here). A
    read-only connection: a WAL reader never takes the writers' lock."""
    from edgefleet.fleet._db import READ_ONLY
    from sqlalchemy import text

    with engine.execution_options(**READ_ONLY).connect() as conn:
        return int(conn.execute(text("SELECT max(id) FROM telemetry")).scalar_one() or 0)


def cpu_s(procs) -> float:
    total = 0.0
    for pr in procs:
        try:
            t = pr.cpu_times()
            total += t.user + t.system
        except Exception:  # an exited process: its time is gone from psutil
            pass
    return total


def send_all(jobs, done, port: int, procs: int, limit: int | None = None) -> tuple[float, int]:
    """(seconds the slowest publisher took, messages sent in total)."""
    for _ in range(procs):
        jobs.put((port, limit))
    results = [done.get() for _ in range(procs)]
    return max(r[2] for r in results), sum(r[3] for r in results)


def ingest_phase(broker, broker_ps, jobs, done, args, *, paho: bool, limit: int | None) -> dict:
    """Start the fleet (main process + replicas), send the packets, wait for the rows."""
    import psutil
    from edgefleet.fleet import FleetService, FleetSettings
    from edgefleet.fleet._db import READ_ONLY
    from sqlalchemy import text

    if paho:
        use_paho_path()
    ctx = mp.get_context("spawn")
    tmp = Path(tempfile.mkdtemp(prefix="telemetry-ingest-"))
    settings = FleetSettings(
        data_dir=tmp,
        broker_url=broker.url,
        telemetry_batch_size=args.batch,
        mqtt_client_id="bench-fleet-paho" if paho else "bench-fleet",
    )
    service = FleetService(settings).start()
    extra = []
    try:
        for k in range(1, args.replicas):
            ready = ctx.Event()
            pr = ctx.Process(
                target=replica,
                args=(str(tmp), broker.url, k, args.batch, paho, ready),
                daemon=True,
            )
            pr.start()
            extra.append(pr)
            if not ready.wait(120):
                raise RuntimeError(f"fleet replica {k} did not start")
        fleet_ps = [psutil.Process()] + [psutil.Process(pr.pid) for pr in extra]
        engine = service.ctx.engine
        cpu0, bcpu0 = cpu_s(fleet_ps), cpu_s([broker_ps])
        t0 = time.monotonic()
        publish_s, sent = send_all(jobs, done, broker.port, args.publishers, limit)
        target = sent * args.samples  # one stored row per sample
        t_end = wait_progress(lambda: stored_rows(engine), target)
        elapsed = t_end - t0
        fleet_cpu, broker_cpu = cpu_s(fleet_ps) - cpu0, cpu_s([broker_ps]) - bcpu0
        with engine.execution_options(**READ_ONLY).connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM telemetry")).scalar_one()
        malformed = service.metrics.get("edgefleet_fleet_mqtt_rejected_total", reason="malformed")
    finally:
        for pr in extra:
            pr.terminate()
            pr.join(30)
        service.stop()
    msgs = stored // args.samples
    return {
        "sent": sent,
        "stored_samples": stored,
        "lost_messages": sent - msgs,
        "msgs_per_s": msgs / elapsed,
        "samples_per_s": stored / elapsed,
        "publish_s": publish_s,
        "fleet_cpu_us_per_msg": fleet_cpu / max(msgs, 1) * 1e6,
        "broker_cpu_us_per_msg": broker_cpu / max(sent, 1) * 1e6,
        "malformed_main": malformed,
    }


def main() -> None:
    ap = parser(__doc__, messages=200_000, publishers=2,
                devices=(500, "device ids per publisher"),
                samples=(1, "telemetry samples per message"),
                rate=(0.0, "offered msg/s in total (0: max)"),
                replicas=(2, "fleet processes sharing ingestion"),
                batch=(5000, "telemetry_batch_size"))  # fmt: skip
    ap.add_argument("--qos", type=int, choices=(0, 1), default=0)
    ap.add_argument(
        "--compare-paho",
        type=int,
        default=0,
        metavar="N",
        help="also run about N messages through the previous paho on_message path",
    )
    args = ap.parse_args()

    import psutil

    from tests.support.mosquitto import Mosquitto

    total = (args.messages // args.publishers) * args.publishers
    ctx = mp.get_context("spawn")
    jobs, done = ctx.Queue(), ctx.Queue()
    share = args.rate / args.publishers if args.rate else 0
    per_pub = total // args.publishers
    pubs = [
        ctx.Process(
            target=publisher,
            args=(k, per_pub, args.devices, args.qos, args.samples, share, jobs, done),
            daemon=True,
        )
        for k in range(args.publishers)
    ]
    for pr in pubs:
        pr.start()
    for _ in pubs:
        done.get(timeout=600)  # every publisher has its packets encoded
    # No per-client queue bound: a consumer slower than the publishers gets a backlog in the
    # broker instead of silent QoS 0 drops, so the figure is its sustained drain rate.
    with Mosquitto(extra_conf=["max_queued_messages 0"]) as broker:
        broker_ps = psutil.Process(broker.proc.pid)
        counter = RawCounter(broker.port)
        t0 = time.monotonic()
        send_all(jobs, done, broker.port, args.publishers)
        t_end = wait_progress(lambda: counter.got, total)
        raw, raw_got = counter.got / (t_end - t0), counter.got
        counter.close()
        fast = ingest_phase(broker, broker_ps, jobs, done, args, paho=False, limit=None)
        old = None
        if args.compare_paho:
            limit = max(1, args.compare_paho // args.publishers)
            old = ingest_phase(broker, broker_ps, jobs, done, args, paho=True, limit=limit)
    for _ in pubs:
        jobs.put(None)
    for pr in pubs:
        pr.join(30)
    ingest = fast["msgs_per_s"]
    result = {
        "messages": total,
        "samples_per_message": args.samples,
        "stored_samples": fast["stored_samples"],
        "lost_messages": fast["lost_messages"],
        "replicas": args.replicas,
        "publishers": args.publishers,
        "devices": args.devices * args.publishers,
        "qos": args.qos,
        "offered_rate": args.rate or "max",
        "publish_s": round(fast["publish_s"], 2),
        "telemetry_batch_size": args.batch,
        "ingest_msgs_per_s": round(ingest),
        "ingest_samples_per_s": round(fast["samples_per_s"]),
        "raw_broker_msgs_per_s": round(raw),
        "raw_received": raw_got,
        "ratio": round(ingest / raw, 3),
        "fleet_cpu_us_per_msg": round(fast["fleet_cpu_us_per_msg"], 1),
        "broker_cpu_us_per_msg": round(fast["broker_cpu_us_per_msg"], 1),
        "malformed": fast["malformed_main"],
    }
    if old is not None:
        result |= {
            "paho_path_messages": old["sent"],
            "paho_path_lost": old["lost_messages"],
            "paho_path_msgs_per_s": round(old["msgs_per_s"]),
            "paho_path_fleet_cpu_us_per_msg": round(old["fleet_cpu_us_per_msg"], 1),
            "speedup_vs_paho_path": round(ingest / old["msgs_per_s"], 2),
            "cpu_ratio_paho_over_fast": round(
                old["fleet_cpu_us_per_msg"] / fast["fleet_cpu_us_per_msg"], 2
            ),
        }
    result |= {
        "load_avg_1m": round(psutil.getloadavg()[0], 2),
        "cpus": psutil.cpu_count(),
        "goal_msgs_per_s": 20_000,
        "host": host(),
    }
    emit(
        result,
        args.json,
        f"fleet ingest {ingest:,.0f} msg/s ({fast['samples_per_s']:,.0f} samples/s) "
        f"vs raw broker pipe {raw:,.0f} msg/s",
    )


if __name__ == "__main__":
    main()
