"""The hand-written MQTT reader: a fuzzed parser, oversized packets skipped unbuffered, and a
reader thread that survives any error and a broker that stops answering PINGREQ."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from edgefleet.fleet._mqtt_wire import WireError, _varint, split_packets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _publish(topic: bytes, payload: bytes, qos: int = 0, pid: int = 7) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + (pid.to_bytes(2, "big") if qos else b"")
    body += payload
    return bytes([0x30 | qos << 1]) + _varint(len(body)) + body


def _parse_all(stream: bytes, chunks: list[int], max_length: int = 0):
    """Feed ``stream`` in ``chunks`` the way the reader does (skipping oversized tails)."""
    pubs, acks, others, oversized = [], [], [], []
    pending, pos, skip, i = b"", 0, 0, 0
    while pos < len(stream):
        step = chunks[i % len(chunks)] if chunks else len(stream)
        i += 1
        data = stream[pos : pos + step]
        pos += step
        if skip:
            if len(data) <= skip:
                skip -= len(data)
                continue
            data, skip = data[skip:], 0
        pending += data
        used = split_packets(
            pending, pubs, acks, others, max_length=max_length, oversized=oversized
        )
        if used > len(pending):
            skip, pending = used - len(pending), b""
        else:
            pending = pending[used:]
    return pubs, acks, others, oversized, pending


_packets = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=40),  # topic
        st.binary(max_size=3000),  # payload
        st.sampled_from([0, 1]),  # qos
        st.integers(1, 65535),  # packet id
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets=_packets, chunks=st.lists(st.integers(1, 5000), min_size=1, max_size=6))
def test_well_formed_streams_parse_to_what_was_sent_in_any_chunking(packets, chunks):
    stream = b"".join(_publish(t, pl, q, pid) for t, pl, q, pid in packets)
    pubs, acks, others, oversized, pending = _parse_all(stream, chunks, max_length=2000)
    assert pending == b""
    assert pubs == [(t, pl) for t, pl, q, _ in packets if _remaining(t, pl, q) <= 2000]
    assert oversized == [
        (t, _remaining(t, pl, q)) for t, pl, q, _ in packets if _remaining(t, pl, q) > 2000
    ]
    # Every QoS 1 packet is acknowledged, refused or not (else the broker's window fills up).
    assert acks == [pid for _, _, q, pid in packets if q]
    assert others == []


def _remaining(topic: bytes, payload: bytes, qos: int) -> int:
    return 2 + len(topic) + (2 if qos else 0) + len(payload)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), chunks=st.lists(st.integers(1, 64), min_size=1, max_size=4))
def test_arbitrary_bytes_raise_wire_error_or_parse_never_anything_else(data, chunks):
    """Whatever a broker (or a man in the middle) sends: WireError or packets, and every
    parsed field lies inside its packet (no IndexError, no slice past the end)."""
    try:
        pubs, acks, others, oversized, pending = _parse_all(data, chunks, max_length=300)
    except WireError:
        return
    for topic, payload in pubs:
        assert len(topic) + len(payload) <= len(data)
    assert all(0 <= a <= 65535 for a in acks)
    for packet in others:
        assert packet[0] >> 4 in (2, 9, 11, 13)


@given(
    header=st.integers(0, 255),
    length=st.integers(0, 2**28 - 1),
    tail=st.binary(max_size=8),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fixed_headers_of_any_declared_length_are_decided_without_buffering(header, length, tail):
    """A declared length is judged from the fixed header: a huge PUBLISH is refused (or put
    aside) as soon as its topic is in, anything else huge is a WireError at once."""
    packet = bytes([header]) + _varint(length) + tail
    pubs, acks, others, oversized = [], [], [], []
    try:
        used = split_packets(packet, pubs, acks, others, max_length=1000, oversized=oversized)
    except WireError:
        return
    kind = header >> 4
    if oversized:  # a PUBLISH over the limit: put aside, its whole length to be skipped
        assert kind == 3 and length > 1000 and used == len(packet) - len(tail) + length
    elif used:  # a complete packet within its limits (perhaps more packets from the tail)
        assert len(packet) - len(tail) + length <= used <= len(packet)
        assert length <= (1000 if kind == 3 else 4098)
    else:  # waiting for more bytes: only ever for a packet it may buffer, or a topic
        assert kind == 3 or length <= 4098


def test_oversized_publish_is_acked_and_skipped_without_buffering():
    big = _publish(b"edgefleet/v1/devices/d/telemetry", b"x" * 5_000_000, qos=1, pid=42)
    after = _publish(b"t/ok", b"fine", qos=1, pid=43)
    stream = big + after
    pubs, acks, others, oversized = [], [], [], []
    head = stream[:64]  # only the start of the big packet has arrived
    used = split_packets(head, pubs, acks, others, max_length=300_000, oversized=oversized)
    assert used == len(big)  # the caller will skip the rest as it arrives
    assert oversized == [(b"edgefleet/v1/devices/d/telemetry", len(big) - 5)]
    assert acks == [42]
    pubs2, acks2, _, _, pending = _parse_all(stream, [65536], max_length=300_000)
    assert pubs2 == [(b"t/ok", b"fine")] and acks2 == [42, 43] and pending == b""


def test_fields_past_the_packet_end_are_wire_errors():
    for bad in (
        b"\x30\x01\x00",  # PUBLISH shorter than its topic length field
        b"\x30\x03\x00\x05ab",  # topic of 5 in a 3-byte packet
        b"\x32\x04\x00\x02ab",  # QoS 1 without room for the packet id
        b"\x36\x04\x00\x02ab",  # QoS 3
        b"\x20\x05\x00\x00\x00\x00\x00",  # CONNACK of 5 bytes
        b"\xd0\x01\x00",  # PINGRESP with a body
        b"\x90\xff\xff\xff\x7f",  # SUBACK declaring 256 MiB
        b"\x40\x02\x00\x01",  # PUBACK: the broker never sends one to this client
        b"\x30\xff\xff\xff\xff\x01",  # remaining length of 5 bytes
    ):
        with pytest.raises(WireError):
            split_packets(bad, [], [], [], max_length=1000, oversized=[])


# ----------------------------------------------------------------------------- the reader


class _SilentBroker:
    """A TCP server speaking just enough MQTT: CONNACK + SUBACK, then ``mode``:
    ``mute`` never answers PINGREQ; ``garbage`` sends a corrupt packet once."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.pings = 0
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        first = self.connections == 1
        with conn:
            conn.sendall(b"\x20\x02\x00\x00" + b"\x90\x03\x00\x01\x01")
            if self.mode == "garbage" and first:
                time.sleep(0.2)
                conn.sendall(b"\x30\x03\x00\x09ab")  # topic longer than the packet
            while not self._stop:
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                self.pings += data.count(b"\xc0\x00")

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()


def _reader(port: int, keepalive: int = 30):
    from edgefleet.fleet._ingest import TelemetryIngest
    from edgefleet.fleet._prometheus import Metrics

    metrics = Metrics()
    rejected: list[tuple] = []
    ingest = TelemetryIngest(
        "127.0.0.1",
        port,
        client_id="t",
        clean_session=True,
        username="",
        password="",
        topic_filter="edgefleet/v1/devices/+/telemetry",
        max_payload_bytes=1024,
        metrics=metrics,
        on_rows=lambda rows: None,
        reject=lambda *a: rejected.append(a),
        keepalive=keepalive,
    )
    return ingest, metrics


def test_reader_reconnects_after_a_corrupt_packet_and_counts_it():
    broker = _SilentBroker("garbage")
    ingest, metrics = _reader(broker.port)
    ingest.start()
    try:
        deadline = time.monotonic() + 10
        while ingest.subscriptions < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ingest.subscriptions >= 2, "the reader did not come back"
        assert ingest.restarts == 1
        assert metrics.get("edgefleet_fleet_ingest_restarts_total", error="WireError") == 1
        assert ingest._thread.is_alive()
    finally:
        ingest.stop()
        broker.close()


def test_reader_reconnects_after_an_unexpected_exception(monkeypatch):
    """Not only OSError/WireError: any exception ends the session, never the thread."""
    from edgefleet.fleet import _ingest

    broker = _SilentBroker("mute")
    calls = {"n": 0}
    real = _ingest.split_packets

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise IndexError("a parser bug")
        return real(*a, **kw)

    monkeypatch.setattr(_ingest, "split_packets", flaky)
    ingest, metrics = _reader(broker.port)
    ingest.start()
    try:
        deadline = time.monotonic() + 10
        while not ingest.subscribed.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ingest.subscribed.is_set() and broker.connections == 2
        assert metrics.get("edgefleet_fleet_ingest_restarts_total", error="IndexError") == 1
    finally:
        ingest.stop()
        broker.close()


def test_a_missing_pingresp_ends_the_connection():
    broker = _SilentBroker("mute")
    ingest, metrics = _reader(broker.port, keepalive=2)  # PINGREQ after 1 s, dead after 2 s
    ingest.start()
    try:
        deadline = time.monotonic() + 15
        while broker.connections < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert broker.connections >= 2 and broker.pings >= 1
        assert metrics.get("edgefleet_fleet_ingest_restarts_total", error="ConnectionError") >= 1
    finally:
        ingest.stop()
        broker.close()
