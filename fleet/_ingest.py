"""TelemetryIngest: a dedicated MQTT connection that only takes the telemetry firehose.

One thread reads the socket in large chunks, splits them into PUBLISH packets
(:mod:`._mqtt_wire`), decodes each payload into rows (:mod:`._telemetry_codec`) and hands
all rows of a chunk to the batching writer in one call; QoS 1 deliveries are acknowledged
in one write per chunk, after their rows are queued. Malformed and oversized payloads are
counted and logged (rate-limited); ingestion goes on. A PUBLISH longer than the payload limit
is refused from its fixed header and skipped as it arrives, never buffered. The connection
is re-established with back-off after any error (counted in
``edgefleet_fleet_ingest_restarts_total``), keeps itself alive with PINGREQ and gives up a
connection whose PINGRESP does not come. Plain TCP or TLS (an ``ssl.SSLContext``).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable

from edgefleet.sdk import Backoff
from edgefleet.sdk.protocol import ProtocolError

from ._mqtt_wire import (
    DISCONNECT,
    PINGREQ,
    WireError,
    connect_packet,
    puback_packets,
    publish_limit,
    split_packets,
    subscribe_packet,
)
from ._prometheus import Metrics
from ._telemetry_codec import Row, TelemetryDecoder

__all__ = ["TelemetryIngest"]

log = logging.getLogger(__name__)

_RECV = 256 * 1024
# Rows go to the writer in lumps (each hand-off wakes its thread): at least this many rows,
# or whatever came within this many seconds.
_HANDOFF_ROWS = 2000
_HANDOFF_S = 0.02
_BACKOFF_MIN_S = 0.2
_BACKOFF_MAX_S = 5.0
# A broker that is down or restarting: expected, retried quietly.
_QUIET_CONNECT_ERRORS = (ConnectionRefusedError, ConnectionResetError, TimeoutError)


def _text(topic: bytes) -> str:
    return topic[:200].decode(errors="replace")


class TelemetryIngest:
    """Subscribes ``topic_filter`` (QoS 1) on its own connection and feeds ``on_rows``.

    ``reject(reason, topic, why)`` is called for each payload that is dropped.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        clean_session: bool,
        username: str,
        password: str,
        topic_filter: str,
        max_payload_bytes: int,
        metrics: Metrics,
        on_rows: Callable[[list[Row]], None],
        reject: Callable[[str, str, str], None],
        keepalive: int = 30,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host, port
        self._addr = (host, port)
        self._connect = connect_packet(
            client_id,
            clean_session=clean_session,
            keepalive=keepalive,
            username=username,
            password=password,
        )
        self._filter = topic_filter
        self._keepalive = keepalive
        # A PINGREQ unanswered this long means a dead (e.g. half-open) connection.
        self._ping_timeout = max(2.0, keepalive / 2)
        self._ping_sent = 0.0
        self._tls = tls
        self.restarts = 0  # sessions that ended in an error (also a /metrics counter)
        self._max_payload = max_payload_bytes
        self._metrics = metrics
        self._on_rows = on_rows
        self._reject = reject
        self.decoder = TelemetryDecoder()
        self.subscribed = threading.Event()
        self.subscriptions = 0  # SUBACKs so far: 2+ means it came back after losing the broker
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()  # guards _sock between the reader and stop()
        self._thread = threading.Thread(
            target=self._run, name="fleet-telemetry-ingest", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            sock = self._sock
        if sock is not None:
            try:
                # The plain socket's shutdown, also under TLS (SSLSocket.shutdown would drop the
                # TLS state under the reader's feet): wakes the reader, which says DISCONNECT.
                socket.socket.shutdown(sock, socket.SHUT_RD)
            except OSError:
                pass
        if self._thread.is_alive():
            self._thread.join(10)

    # ------------------------------------------------------------------ connection

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=10)
        if self._tls is not None:
            try:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
        return sock

    def _run(self) -> None:
        backoff = Backoff(_BACKOFF_MIN_S, _BACKOFF_MAX_S)
        while not self._stop.is_set():
            try:
                sock = self._open()
            except Exception as e:  # broker away (debug), a refused certificate (warning), ...
                level = logging.DEBUG if type(e) in _QUIET_CONNECT_ERRORS else logging.WARNING
                log.log(level, "telemetry ingest cannot connect to %s:%s: %s", *self._addr, e)
            else:
                with self._lock:
                    self._sock = sock
                subscribed_before = self.subscriptions
                try:
                    self._session(sock)
                except Exception as e:  # any error: count it, log it, reconnect
                    if not self._stop.is_set():
                        self.restarts += 1
                        self._metrics.inc(
                            "edgefleet_fleet_ingest_restarts_total", error=type(e).__name__
                        )
                        expected = isinstance(e, OSError | WireError | ConnectionError)
                        log.warning(
                            "telemetry ingest connection lost (%s: %s); reconnecting",
                            type(e).__name__,
                            e,
                            exc_info=not expected,  # a bug in here deserves its traceback
                        )
                finally:
                    self.subscribed.clear()
                    with self._lock:
                        self._sock = None
                    sock.close()
                if self.subscriptions > subscribed_before:
                    backoff.reset()  # it worked for a while: come back quickly
            self._stop.wait(backoff.next())

    def _session(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * _RECV)
        sock.sendall(self._connect + subscribe_packet(1, [(self._filter, 1)]))
        last_sent = handed = time.monotonic()
        self._ping_sent = 0.0
        pending = b""
        skip = 0  # bytes of an oversized PUBLISH still to discard as they arrive
        publishes: list[tuple[bytes, bytes]] = []
        acks: list[int] = []
        others: list[bytes] = []
        oversized: list[tuple[bytes, int]] = []
        rows: list[Row] = []
        # The payload limit plus room for the topic and packet id: a longer PUBLISH is
        # refused from its fixed header, never buffered (the buffer stays below this + _RECV).
        max_length = publish_limit(self._max_payload)
        try:
            while not self._stop.is_set():
                # Wake up for keepalives and stop(); sooner while rows wait for the hand-off.
                sock.settimeout(_HANDOFF_S if rows else 1.0)
                try:
                    data = sock.recv(_RECV)
                except TimeoutError:
                    data = None
                if data == b"":
                    if self._stop.is_set():
                        break
                    raise ConnectionError("broker closed the connection")
                if data and skip:
                    if len(data) <= skip:
                        skip -= len(data)
                        data = None
                    else:
                        data, skip = data[skip:], 0
                if data:
                    pending = pending + data if pending else data
                    used = split_packets(
                        pending,
                        publishes,
                        acks,
                        others,
                        max_length=max_length,
                        oversized=oversized,
                    )
                    if used > len(pending):
                        skip, pending = used - len(pending), b""
                    else:
                        pending = pending[used:]
                    for packet in others:
                        self._control(packet)
                    others.clear()
                    for topic, length in oversized:
                        self._reject("oversized", _text(topic), f"{length} bytes > {max_length}")
                    oversized.clear()
                    if publishes:
                        self._handle(publishes, rows)
                        publishes.clear()
                    if acks:
                        sock.sendall(puback_packets(acks))
                        acks.clear()
                        last_sent = time.monotonic()
                now = time.monotonic()
                if rows and (len(rows) >= _HANDOFF_ROWS or now - handed >= _HANDOFF_S):
                    self._hand_off(rows)
                    rows = []
                    handed = now
                if self._ping_sent and now - self._ping_sent > self._ping_timeout:
                    raise ConnectionError(
                        f"no PINGRESP within {self._ping_timeout:g}s: the connection is dead"
                    )
                if now - last_sent > self._keepalive / 2:
                    sock.sendall(PINGREQ)
                    last_sent = time.monotonic()
                    if not self._ping_sent:
                        self._ping_sent = last_sent
            # A clean DISCONNECT: with a clean session the broker drops our share at once.
            sock.sendall(DISCONNECT)
        finally:
            if rows:  # already acknowledged: store them even if the connection broke
                self._hand_off(rows)

    def _control(self, packet: bytes) -> None:
        kind = packet[0] >> 4
        if kind == 2:  # CONNACK: byte 3 is the return code
            if packet[-1] != 0:
                raise ConnectionError(f"broker refused the connection (CONNACK code {packet[-1]})")
        elif kind == 9:  # SUBACK: one return code per filter, 0x80 = refused
            if packet[-1] == 0x80:
                raise ConnectionError(f"broker refused the subscription to {self._filter}")
            self.subscriptions += 1
            self.subscribed.set()
            log.info("telemetry ingest subscribed to %s", self._filter)
        elif kind == 13:  # PINGRESP
            self._ping_sent = 0.0

    # ------------------------------------------------------------------ messages

    def _handle(self, publishes: list[tuple[bytes, bytes]], rows: list[Row]) -> None:
        decode = self.decoder.rows
        limit = self._max_payload
        for topic, payload in publishes:
            if len(payload) > limit:
                self._reject("oversized", _text(topic), f"{len(payload)} bytes > {limit}")
                continue
            try:
                rows.extend(decode(topic, payload))
            except ProtocolError as e:
                self._reject("malformed", _text(topic), str(e))
            except Exception as e:  # a decoder bug costs this message, not the connection
                log.exception("decoding telemetry on %s failed", _text(topic))
                self._reject("decode_error", _text(topic), f"{type(e).__name__}: {e}")
        self._metrics.inc("edgefleet_fleet_mqtt_messages_total", len(publishes))

    def _hand_off(self, rows: list[Row]) -> None:
        try:
            self._on_rows(rows)
        except Exception:  # a writer bug must not kill the connection
            log.exception("handing %d telemetry rows to the writer failed", len(rows))
