"""The few MQTT 3.1.1 packets the telemetry ingest client needs, built and parsed by hand.

paho parses every packet with several one-byte socket reads and builds an MQTTMessage per
message, which caps a subscriber at a few thousand messages/s on this machine; here one
``recv`` of up to 256 KiB is split into all the PUBLISH packets it holds.
"""

from __future__ import annotations

import logging
import struct

__all__ = [
    "PINGREQ",
    "DISCONNECT",
    "WireError",
    "connect_packet",
    "subscribe_packet",
    "puback_packets",
    "split_packets",
    "publish_limit",
]

log = logging.getLogger(__name__)

PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
_PUBACK = struct.Struct("!BBH")
# Packets the broker may send besides PUBLISH, with their allowed remaining lengths:
# CONNACK, SUBACK (packet id + one code per filter), UNSUBACK, PINGRESP.
_CONTROL = {2: (2, 2), 9: (3, 4098), 11: (2, 2), 13: (0, 0)}


def publish_limit(max_payload_bytes: int) -> int:
    """Longest PUBLISH remaining length that can hold an allowed payload: the payload, the
    longest topic (64 KiB) and a packet id. Longer ones are refused from the fixed header."""
    return max_payload_bytes + 2 + 65535 + 2


class WireError(Exception):
    """A packet the broker should never send (corrupt length, unknown type)."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def connect_packet(
    client_id: str, *, clean_session: bool, keepalive: int, username: str, password: str
) -> bytes:
    flags = 0x02 if clean_session else 0
    payload = _str(client_id)
    if username:
        flags |= 0x80
        payload += _str(username)
        if password:
            flags |= 0x40
            payload += _str(password)
    body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload
    return b"\x10" + _varint(len(body)) + body


def subscribe_packet(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(_str(f) + bytes([q]) for f, q in filters)
    return b"\x82" + _varint(len(body)) + body


def puback_packets(packet_ids: list[int]) -> bytes:
    pack = _PUBACK.pack
    return b"".join(pack(0x40, 2, pid) for pid in packet_ids)


def split_packets(
    buf: bytes,
    publishes: list[tuple[bytes, bytes]],
    acks: list[int],
    others: list[bytes],
    *,
    max_length: int = 0,
    oversized: list[tuple[bytes, int]] | None = None,
) -> int:
    """Parse the complete packets at the start of ``buf``; return how many bytes they use.

    PUBLISH packets go to ``publishes`` as (topic, payload) and, when QoS 1, their packet id
    to ``acks``; every other packet goes whole to ``others`` (CONNACK, SUBACK, PINGRESP).
    Every field is checked against the packet's end: a packet that does not fit raises
    :class:`WireError`, never an IndexError.

    ``max_length`` > 0: a PUBLISH declaring a longer remaining length is not buffered: as soon
    as its topic (and packet id) are in ``buf`` it goes to ``oversized`` as (topic, declared
    length), its id to ``acks``, and the return value counts its whole length, which may be
    more than ``len(buf)``: the caller skips that many bytes of what it receives next.
    """
    i, n = 0, len(buf)
    while i + 2 <= n:
        header = buf[i]
        # Remaining length: 1-4 bytes, 7 bits each, low first.
        j, length, shift = i + 1, 0, 0
        while True:
            if j >= n:
                return i
            b = buf[j]
            length |= (b & 0x7F) << shift
            j += 1
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise WireError("remaining length longer than 4 bytes")
        end = j + length
        kind = header >> 4
        if kind == 3:
            qos = (header >> 1) & 3
            if qos == 3:
                raise WireError("PUBLISH with QoS 3")
            if length < (4 if qos else 2):
                raise WireError(f"PUBLISH of {length} bytes cannot hold its header")
            if max_length and length > max_length:
                if j + 2 > n:
                    return i
                t_end = j + 2 + ((buf[j] << 8) | buf[j + 1])
                if t_end + (2 if qos else 0) > end:
                    raise WireError("PUBLISH topic runs past the packet end")
                if t_end + 2 > n:
                    return i  # at most 64 KiB of topic: waiting for it is bounded
                if oversized is None:
                    raise WireError(f"PUBLISH of {length} bytes over the {max_length} limit")
                if qos:
                    acks.append((buf[t_end] << 8) | buf[t_end + 1])
                oversized.append((buf[j + 2 : t_end], length))
                if end > n:
                    return end
                i = end
                continue
            if end > n:
                return i
            t_end = j + 2 + ((buf[j] << 8) | buf[j + 1])
            if qos:
                if t_end + 2 > end:
                    raise WireError("PUBLISH topic and packet id run past the packet end")
                acks.append((buf[t_end] << 8) | buf[t_end + 1])
                publishes.append((buf[j + 2 : t_end], buf[t_end + 2 : end]))
            else:
                if t_end > end:
                    raise WireError("PUBLISH topic runs past the packet end")
                publishes.append((buf[j + 2 : t_end], buf[t_end:end]))
        elif kind in _CONTROL:
            lo, hi = _CONTROL[kind]
            if not lo <= length <= hi:
                raise WireError(f"MQTT packet type {kind} with {length} bytes")
            if end > n:
                return i
            others.append(buf[i:end])
        else:
            raise WireError(f"unexpected MQTT packet type {kind} from the broker")
        i = end
    return i
