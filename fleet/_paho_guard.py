"""A paho client that never buffers a PUBLISH longer than the fleet's payload limit.

paho reads a packet's remaining length and then buffers that many bytes, whatever they are:
a broker without a size limit would make the fleet hold a device's 64 MiB message in memory.
This subclass hooks paho's socket read (``_sock_recv``, paho 2.x): when the payload of a
PUBLISH declared over the limit is about to be read, it reads the topic and packet id,
discards the rest from the socket as it arrives, and gives paho the packet without its
payload, so the QoS 1 flow completes (no redelivery loop) and ``on_oversized(topic, length)``
is told; paho then delivers an empty payload that the bridge drops without counting twice.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import paho.mqtt.client as mqtt

__all__ = ["GuardedClient"]

log = logging.getLogger(__name__)

_DRAIN_TIMEOUT_S = 30.0  # a sender stalling mid-packet costs us a reconnect, not forever


class GuardedClient(mqtt.Client):
    def __init__(
        self, *args, max_packet: int, on_oversized: Callable[[str, int], None], **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self._max_packet = max_packet
        self._on_oversized = on_oversized
        self.skipped_topic: str | None = None  # the last PUBLISH delivered without payload

    def _sock_recv(self, bufsize: int) -> bytes:
        p = self._in_packet
        if (
            p["have_remaining"]
            and (p["command"] & 0xF0) == 0x30
            and p["remaining_length"] > self._max_packet
            and not p["packet"]
            and bufsize == p["to_process"]
        ):
            return self._skip(p)
        return super()._sock_recv(bufsize)

    def _recv_exactly(self, sock: socket.socket, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = sock.recv(min(n - len(out), 256 * 1024))
            if not chunk:
                raise ConnectionError("broker closed the connection inside a packet")
            out += chunk
        return bytes(out)

    def _skip(self, p: dict) -> bytes:
        sock = self._sock
        if sock is None:
            raise ConnectionError("no socket")
        length = p["remaining_length"]
        qos = (p["command"] >> 1) & 3
        timeout = sock.gettimeout()
        sock.settimeout(_DRAIN_TIMEOUT_S)  # paho's socket is non-blocking: drain in one go
        try:
            head = self._recv_exactly(sock, 2)
            tlen = int.from_bytes(head, "big")
            head += self._recv_exactly(sock, tlen + (2 if qos else 0))
            if len(head) > length:
                raise ConnectionError("PUBLISH topic runs past the packet end")
            left = length - len(head)
            while left:
                chunk = sock.recv(min(left, 256 * 1024))
                if not chunk:
                    raise ConnectionError("broker closed the connection inside a packet")
                left -= len(chunk)
        except TimeoutError as e:
            raise ConnectionError("an oversized PUBLISH stalled") from e
        finally:
            sock.settimeout(timeout)
        topic = head[2 : 2 + tlen].decode(errors="replace")
        self.skipped_topic = topic
        self._on_oversized(topic, length)
        # paho now sees a PUBLISH of topic (+ packet id) and no payload.
        p["remaining_length"] = p["to_process"] = len(head)
        return head
