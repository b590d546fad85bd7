"""The telemetry fast path: bulk MQTT reader, TypedDict decoder and tuple rows.

Against a real Mosquitto: it stores exactly what it received (fast and slow path alike),
counts malformed and oversized payloads, and survives a broker restart.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone

import paho.mqtt.client as mqtt
import pytest
from edgefleet.sdk import protocol as p
from sqlalchemy import text

from tests.support.mosquitto import Mosquitto
from tests.support.waiting import wait_until

from .conftest import mqtt_service

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def _batch(dev: str, seq: int, n: int = 1, **extra) -> p.TelemetryBatch:
    samples = [
        p.TelemetrySample(
            ts=T0 + timedelta(seconds=seq * 10 + i),
            model=None if i == 1 else f"m@{seq}.0.0",
            calls=seq + i,
            errors=i % 2,
            latency_p50_ms=None if i else 1.25,
            latency_p95_ms=2.5 + i,
            latency_p99_ms=9,
            cache_hits=i,
            cache_misses=0 if i == 0 else 3,
            cpu_percent=12.5,
        )
        for i in range(n)
    ]
    return p.TelemetryBatch(device_id=dev, seq=seq, samples=samples, **extra)


def _expected(msg: p.TelemetryBatch) -> list[tuple]:
    from edgefleet.fleet._telemetry_codec import batch_rows

    return batch_rows(msg)


# ----------------------------------------------------------------------------- units


def test_fast_schema_mirrors_the_protocol_models():
    from edgefleet.fleet._telemetry_codec import _FastBatch, _FastGeneration, _FastSample

    assert set(_FastBatch.__annotations__) == set(p.TelemetryBatch.model_fields)
    assert set(_FastSample.__annotations__) == set(p.TelemetrySample.model_fields)
    assert set(_FastGeneration.__annotations__) == set(p.GenerationTelemetry.model_fields)


def _variants() -> list[bytes]:
    good = json.loads(p.encode(_batch("dev-1", 3, n=3)))
    out = [json.dumps(good).encode()]
    for mutate in (
        lambda d: d.update(schema_version=1),  # v1: the slow path upgrades it
        lambda d: d.update(extra=1),
        lambda d: d.update(device_id="dev-2"),
        lambda d: d.update(seq=-1),
        lambda d: d.update(seq=True),
        lambda d: d.update(seq=2**70),
        lambda d: d.pop("samples"),
        lambda d: d.update(samples=d["samples"] * 400),  # 1,200 > 1,000
        lambda d: d["samples"][0].update(ts="2026-01-02T03:04:05"),  # naive
        lambda d: d["samples"][0].update(ts="2026-01-02T03:04:05+02:00"),
        lambda d: d["samples"][0].update(ts="2026-13-02T03:04:05Z"),
        lambda d: d["samples"][0].update(calls=-5),
        lambda d: d["samples"][0].update(calls=2.0),
        lambda d: d["samples"][0].update(latency_p95_ms="7.5"),
        lambda d: d["samples"][0].update(latency_p95_ms=[1]),
        lambda d: d["samples"][0].update(bogus=1),
        lambda d: d["samples"][0].pop("ts"),
        lambda d: d.update(type="state"),
    ):
        d = json.loads(json.dumps(good))
        mutate(d)
        out.append(json.dumps(d).encode())
    return out + [b"", b"{", b"[]", b"\xff\xfe", b"null", b"{}"]


@pytest.mark.parametrize("payload", _variants())
def test_fast_path_accepts_only_what_the_protocol_accepts_with_the_same_rows(payload):
    from edgefleet.fleet._telemetry_codec import TelemetryDecoder, _fast_rows, batch_rows

    topic = p.telemetry_topic("dev-1")
    try:
        reference = batch_rows(p.decode(topic, payload))
    except p.ProtocolError:
        reference = None
    if b"1180591620717411303424" in payload:  # 2**70: valid protocol, too big to store
        reference = None
    fast = _fast_rows("dev-1", payload)
    if fast is not None:
        assert fast == reference
    dec = TelemetryDecoder()
    if reference is None:
        with pytest.raises(p.ProtocolError):
            dec.rows(topic.encode(), payload)
    else:
        assert dec.rows(topic.encode(), payload) == reference


def test_decoder_refuses_bad_topics():
    from edgefleet.fleet._telemetry_codec import TelemetryDecoder

    payload = p.encode(_batch("dev-1", 0))
    dec = TelemetryDecoder()
    for topic in (b"edgefleet/v1/devices/../telemetry", b"other/dev-1/telemetry", b"\xff"):
        with pytest.raises(p.ProtocolError):
            dec.rows(topic, payload)


def test_split_packets_reassembles_any_chunking():
    from edgefleet.fleet._mqtt_wire import _str, _varint, split_packets

    rnd = random.Random(5)
    sent, stream = [], b""
    for i in range(300):
        topic, payload = (
            f"t/{i}".encode(),
            bytes(rnd.randrange(256) for _ in range(rnd.choice((0, 5, 200, 3000)))),
        )
        qos = i % 2
        body = _str(topic.decode()) + (i.to_bytes(2, "big") if qos else b"") + payload
        stream += bytes([0x30 | qos << 1]) + _varint(len(body)) + body
        sent.append((topic, payload, qos, i))
        if i % 50 == 0:
            stream += b"\xd0\x00"  # PINGRESP in between
    pubs, acks, others, pending, pos = [], [], [], b"", 0
    while pos < len(stream):
        step = rnd.choice((1, 3, 100, 5000, 70000))
        pending += stream[pos : pos + step]
        pos += step
        pending = pending[split_packets(pending, pubs, acks, others) :]
    assert pending == b""
    assert pubs == [(t, pl) for t, pl, _, _ in sent]
    assert acks == [i for _, _, q, i in sent if q]
    assert others == [b"\xd0\x00"] * 6


# ----------------------------------------------------------------------------- with Mosquitto


def _stored(service) -> list[tuple]:
    with service.ctx.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT device_id, model, ts, seq, calls, errors, p50_ms, p95_ms, p99_ms,"
                " cache_hit_rate, ttft_p95_ms, decode_tps FROM telemetry"
            )
        )
        return sorted(tuple(r) for r in rows)


@pytest.mark.broker
def test_stores_exactly_what_it_received_and_counts_the_rest(tmp_path, mosquitto):
    svc = mqtt_service(tmp_path, mosquitto.url, "fastpath")
    assert svc.mqtt.ingest is not None and svc.mqtt.ingest.subscribed.is_set()
    m = svc.metrics
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fast-dev")
    c.connect("127.0.0.1", mosquitto.port)
    c.loop_start()
    expected: list[tuple] = []
    try:
        for i in range(150):
            dev = f"fast-{i % 7}"
            b = _batch(dev, i, n=1 + i % 4)
            expected += _expected(b)
            c.publish(p.telemetry_topic(dev), p.encode(b), qos=i % 2)
        # A v1 batch (slow path, upgraded) and one with an offset timestamp.
        v1 = json.loads(p.encode(_batch("fast-v1", 1)))
        v1["schema_version"] = 1
        del v1["dropped"]
        expected += _expected(_batch("fast-v1", 1))
        c.publish(p.telemetry_topic("fast-v1"), json.dumps(v1).encode(), qos=1)
        cet = _batch("fast-tz", 2).model_copy()
        raw = json.loads(p.encode(cet))
        local = (T0 + timedelta(seconds=20)).astimezone(timezone(timedelta(hours=2)))
        raw["samples"][0]["ts"] = local.isoformat()
        expected += _expected(cet)
        c.publish(p.telemetry_topic("fast-tz"), json.dumps(raw).encode(), qos=1)
        junk = [
            b"{",
            b"[]",
            p.encode(_batch("someone-else", 1)),  # device id differs from the topic's
            json.dumps({**json.loads(p.encode(_batch("fast-0", 1))), "seq": -1}).encode(),
        ]
        before = {
            r: m.get("edgefleet_fleet_mqtt_rejected_total", reason=r)
            for r in ("malformed", "oversized")
        }
        for payload in junk:
            c.publish(p.telemetry_topic("fast-0"), payload, qos=1).wait_for_publish(5)
        c.publish(p.telemetry_topic("fast-0"), b"x" * (300 * 1024), qos=1).wait_for_publish(5)
        good_after = _batch("fast-late", 99)
        expected += _expected(good_after)
        c.publish(p.telemetry_topic("fast-late"), p.encode(good_after), qos=1).wait_for_publish(5)

        assert wait_until(lambda: len(_stored(svc)) >= len(expected), 20), len(_stored(svc))
        svc.telemetry.flush()
        assert _stored(svc) == sorted(expected)
        got = {
            r: m.get("edgefleet_fleet_mqtt_rejected_total", reason=r) - before[r] for r in before
        }
        assert got == {"malformed": len(junk), "oversized": 1}
        assert svc.mqtt.ingest.decoder.slow >= 2  # the v1 and junk took the slow path
        assert svc.mqtt.ingest.decoder.fast >= 150
    finally:
        c.loop_stop()
        c.disconnect()
        svc.stop()


@pytest.mark.broker
def test_ingest_reconnects_after_a_broker_restart(tmp_path):
    with Mosquitto() as broker:
        svc = mqtt_service(tmp_path, broker.url, "restart")
        try:
            assert svc.mqtt.healthy
            broker.stop()
            # /health reports the outage for the telemetry connection too.
            assert wait_until(lambda: not svc.mqtt.ingest.subscribed.is_set(), 20)
            assert not svc.mqtt.healthy
            broker.start()
            assert wait_until(lambda: svc.mqtt.ingest.subscriptions >= 2, 20)
            assert wait_until(lambda: svc.mqtt.healthy, 20)
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="restart-dev")
            c.connect("127.0.0.1", broker.port)
            c.loop_start()
            try:
                b = _batch("restart-0", 0, n=2)
                c.publish(p.telemetry_topic("restart-0"), p.encode(b), qos=1).wait_for_publish(5)
                assert wait_until(lambda: _stored(svc) == sorted(_expected(b)), 20)
            finally:
                c.loop_stop()
                c.disconnect()
        finally:
            svc.stop()
