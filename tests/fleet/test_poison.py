"""One device's poison never costs another device a row or a report.

Refused at validation (lone surrogates, NaN, 1e308, huge integers, deep nesting, wrong
types), and, for whatever still reaches the store and is refused there, the batch is split
so only the bad item is dropped and counted in /metrics.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from edgefleet.sdk import protocol as p
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.support.waiting import wait_until

from .conftest import check_refused_items_cost_only_themselves, mqtt_service, offline_service

POISON_VALUES = [
    '"a\\u0000b"',  # NUL: PostgreSQL refuses it
    '"\\ud800"',  # a lone surrogate
    '"\\udfff x"',
    "NaN",
    "Infinity",
    "-Infinity",
    "1e308",
    "1" * 5000,  # an integer past Python's int() digit limit
    "[" * 5000 + "]" * 5000,  # deep nesting
    '{"nested": ' * 300 + "1" + "}" * 300,
    "[1, 2]",  # wrong type
    '{"a": 1}',
]


def _state(dev: str, **kw) -> dict:
    return json.loads(p.encode(p.State(device_id=dev, online=True, **kw)))


def _telemetry(dev: str, seq: int) -> dict:
    s = p.TelemetrySample(ts=datetime.now(UTC), model="m@1", calls=3, latency_p95_ms=2.0)
    return json.loads(p.encode(p.TelemetryBatch(device_id=dev, seq=seq, samples=[s])))


def _poisoned(doc: dict, path: tuple, value: str) -> bytes:
    """``doc`` as JSON with the raw JSON text ``value`` at ``path``."""
    marker = "__POISON__"
    d = json.loads(json.dumps(doc))
    target = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = marker
    return json.dumps(d).replace(f'"{marker}"', value).encode()


@pytest.mark.parametrize("value", POISON_VALUES)
def test_the_codec_refuses_poison_with_a_reason(value):
    for doc, path in (
        (_state("d1"), ("agent_version",)),
        (_telemetry("d1", 1), ("samples", 0, "latency_p95_ms")),
        (_telemetry("d1", 1), ("samples", 0, "model")),
    ):
        payload = _poisoned(doc, path, value)
        topic = p.state_topic("d1") if doc["type"] == "state" else p.telemetry_topic("d1")
        with pytest.raises(p.ProtocolError) as e:
            p.decode(topic, payload)
        assert str(e.value)


def test_valid_unicode_and_escaped_pairs_still_pass():
    payload = _poisoned(_state("d1"), ("agent_version",), '"\\ud83d\\ude00 caf\\u00e9"')
    assert p.decode(p.state_topic("d1"), payload).agent_version == "\U0001f600 café"


def _agent_version(svc, dev: str) -> str | None:
    from edgefleet.fleet import NotFoundError

    svc.sync()
    try:
        return svc.devices.get(dev).agent_version
    except NotFoundError:
        return None


def _rows(svc, dev: str) -> int:
    svc.telemetry.flush()
    with svc.ctx.engine.connect() as conn:
        q = text("SELECT count(*) FROM telemetry WHERE device_id = :d")
        return conn.execute(q, {"d": dev}).scalar()


@pytest.mark.broker
def test_a_hostile_device_costs_a_good_one_nothing(tmp_path, mosquitto):
    svc = mqtt_service(tmp_path, mosquitto.url, "poison")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="poison-mix")
    c.connect("127.0.0.1", mosquitto.port)
    c.loop_start()
    try:
        for i in range(40):
            value = POISON_VALUES[i % len(POISON_VALUES)]
            bad = "evil-1"
            c.publish(
                p.telemetry_topic(bad),
                _poisoned(_telemetry(bad, i), ("samples", 0, "model"), value),
                qos=i % 2,
            )
            c.publish(p.state_topic(bad), _poisoned(_state(bad), ("agent_version",), value), 1)
            c.publish(
                p.inventory_topic(bad),
                _poisoned(
                    json.loads(p.encode(p.Inventory(device_id=bad, profile="x"))),
                    ("runtimes",),
                    '{"ort": ' + value + "}",
                ),
                1,
            )
            c.publish(p.telemetry_topic("good-1"), json.dumps(_telemetry("good-1", i)), qos=1)
            st = _state("good-1", agent_version=f"v{i}")
            c.publish(p.state_topic("good-1"), json.dumps(st), qos=1)
        assert wait_until(lambda: _rows(svc, "good-1") == 40, 20)
        # States come on the report path (another connection): wait for the last one.
        wait_until(lambda: _agent_version(svc, "good-1") == "v39", 20, what="good-1's last state")
        m = svc.metrics
        wait_until(
            lambda: m.get("edgefleet_fleet_mqtt_rejected_total", reason="malformed") == 120,
            20,
            what="every poisoned message counted",
        )
        assert svc.mqtt.ingest.restarts == 0 and svc.mqtt.ingest._thread.is_alive()
        with pytest.raises(Exception):  # noqa: B017 - never registered by a poisoned state
            svc.devices.get("evil-1")
    finally:
        c.disconnect()
        c.loop_stop()
        svc.stop()


def test_a_row_the_store_refuses_costs_only_itself(tmp_path):
    """Past validation (a future bug, a new field): the store raises for one row; the batch
    is split and every other device's row lands; the bad one is counted in /metrics."""
    svc = offline_service(tmp_path, telemetry_flush_interval_s=0.05).start()
    try:
        check_refused_items_cost_only_themselves(svc, "dev", "\ud800", rows=300, states=50)
        assert 'edgefleet_fleet_poison_dropped_total{path="telemetry"} 1' in svc.metrics.render()
    finally:
        svc.stop()


def _raw_publish(port: int, topic: str, size: int, qos: int = 1) -> None:
    """Stream a PUBLISH of ``size`` payload bytes without holding it in memory."""
    import socket

    from edgefleet.fleet._mqtt_wire import _str, _varint, connect_packet

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(connect_packet("huge-sender", clean_session=True, keepalive=30, username="",
                                 password=""))  # fmt: skip
        assert s.recv(4) == b"\x20\x02\x00\x00"
        head = _str(topic) + (b"\x00\x09" if qos else b"")
        s.sendall(bytes([0x30 | qos << 1]) + _varint(len(head) + size) + head)
        chunk = b"{" * (256 * 1024)
        for _ in range(size // len(chunk)):
            s.sendall(chunk)
        if qos:
            assert s.recv(4) == b"\x40\x02\x00\x09"  # the broker took it


@pytest.fixture
def mosquitto_alone():
    """A broker of this test's own: no other fleet of the test session receives (and
    buffers) its 16 MiB messages, so the traced peak is this fleet's alone."""
    from tests.support.mosquitto import Mosquitto

    with Mosquitto() as broker:
        yield broker


@pytest.mark.broker
def test_both_fleet_readers_skip_an_oversized_publish_without_buffering(tmp_path, mosquitto_alone):
    """A broker without a size limit forwards 16 MiB: the paho connection (events) and the
    bulk telemetry reader both refuse it from its header, never hold it, stay connected."""
    mosquitto = mosquitto_alone
    import gc
    import tracemalloc

    svc = mqtt_service(tmp_path, mosquitto.url, "huge")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="huge-good")
    c.connect("127.0.0.1", mosquitto.port)
    c.loop_start()
    disconnects = []
    svc.mqtt.client.on_disconnect = lambda *a: disconnects.append(a)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        _raw_publish(mosquitto.port, p.events_topic("huge-1"), 16 * 1024 * 1024)
        _raw_publish(mosquitto.port, p.telemetry_topic("huge-1"), 16 * 1024 * 1024)
        m = svc.metrics
        assert wait_until(
            lambda: m.get("edgefleet_fleet_mqtt_rejected_total", reason="oversized") == 2, 30
        )
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        assert peak < 4 * 1024 * 1024, f"the fleet buffered {peak / 2**20:.1f} MiB"
        c.publish(p.telemetry_topic("good-2"), json.dumps(_telemetry("good-2", 1)), qos=1)
        c.publish(p.state_topic("good-2"), json.dumps(_state("good-2", agent_version="after")), 1)
        assert wait_until(lambda: _rows(svc, "good-2") == 1, 10)
        assert wait_until(lambda: svc.devices.get("good-2").agent_version == "after", 10)
        assert not disconnects and svc.mqtt.ingest.restarts == 0
        assert m.get("edgefleet_fleet_mqtt_rejected_total", reason="malformed") == 0
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        c.disconnect()
        c.loop_stop()
        svc.stop()


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(min_codepoint=0, max_codepoint=0xDFFF), max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
_FIELDS = ["model", "calls", "errors", "latency_p95_ms", "cache_hits", "cpu_percent", "ts"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(_FIELDS),
    value=_json_values,
    top=st.sampled_from(["seq", "device_id", "dropped"]),
    top_value=_json_values,
)
def test_whatever_a_device_sends_the_decoder_returns_storable_rows_or_says_why(
    field, value, top, top_value
):
    """Fuzzed telemetry: ProtocolError, or rows every store and every SUM can take."""
    from edgefleet.fleet._telemetry_codec import TelemetryDecoder

    doc = _telemetry("d1", 1)
    doc["samples"][0][field] = value
    doc[top] = top_value
    payload = json.dumps(doc).encode("utf-8", "surrogatepass")
    try:
        rows = TelemetryDecoder().rows(p.telemetry_topic("d1").encode(), payload)
    except p.ProtocolError as e:
        assert str(e)
        return
    for row in rows:
        for v in row:
            if isinstance(v, str):
                v.encode()  # no lone surrogate
            elif isinstance(v, float):
                assert math.isfinite(v) and abs(v) <= p.MAX_ABS_FLOAT
            elif isinstance(v, int):
                assert 0 <= v <= 2**63 - 1
        assert all(0 <= row[i] <= p.MAX_COUNT for i in (4, 5))


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e308", '"\\ud800"'])
def test_the_paho_telemetry_path_refuses_poison_too(value):
    """With the bulk reader off, telemetry goes through paho's fast path: it must hand poison
    to the full decoder (which refuses it), never accept it."""
    from edgefleet.fleet._mqtt import MqttBridge

    field = "model" if value.startswith('"') else "latency_p95_ms"
    payload = _poisoned(_telemetry("d1", 1), ("samples", 0, field), value)
    assert MqttBridge._fast_telemetry(p.telemetry_topic("d1"), payload) is None
    with pytest.raises(p.ProtocolError):
        p.decode(p.telemetry_topic("d1"), payload)
