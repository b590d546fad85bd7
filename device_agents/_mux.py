"""One thread driving many paho-mqtt clients (paho's external-loop API).

A single agent and a simulated fleet of 1,000 agents use the same loop: one poll over all
sockets instead of one network thread per client. Reconnects use jittered exponential backoff.
Periodic work (telemetry ticks) runs on the same thread through ``every``.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edgefleet.sdk import Backoff

__all__ = ["Mux", "Link"]

log = logging.getLogger(__name__)


@dataclass
class Link:
    """A client under the mux with its connect parameters and reconnect backoff."""

    client: object
    host: str
    port: int
    keepalive: int
    connect_kwargs: dict = field(default_factory=dict)
    min_delay: float = 0.5
    max_delay: float = 30.0
    backoff: Backoff = field(init=False)
    next_attempt: float = 0.0
    attempt_at: float = 0.0  # when the last CONNECT went out (monotonic)
    started: bool = False
    closed: bool = False

    def __post_init__(self) -> None:
        self.backoff = Backoff(self.min_delay, self.max_delay)


class Mux:
    def __init__(self, tick_s: float = 0.25) -> None:
        self.tick_s = tick_s
        self._links: list[Link] = []
        self._timers: list[list] = []  # [next_due, period, fn]
        self._misc_due = 0.0
        self._lock = threading.Lock()
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self, *_args: object) -> None:
        try:
            os.write(self._w, b"x")
        except BlockingIOError:
            pass

    def add(self, link: Link) -> Link:
        c = link.client
        c.on_socket_register_write = self.wake  # paho then leaves all writes to this loop
        link.backoff.reset()
        with self._lock:
            self._links.append(link)
        self.wake()
        return link

    def replace_client(self, link: Link, client: object, connect_kwargs: dict) -> None:
        """Swap the link's client (e.g. another MQTT version); connects on the next step.
        The old client has already closed its socket (refused CONNACK)."""
        client.on_socket_register_write = self.wake
        with self._lock:
            link.client, link.connect_kwargs = client, connect_kwargs
            link.started = False
            link.next_attempt = 0.0
            link.backoff.reset()
        self.wake()

    def remove(self, link: Link) -> None:
        link.closed = True
        with self._lock:
            if link in self._links:
                self._links.remove(link)

    def every(self, period_s: float, fn: Callable[[], None]) -> list:
        timer = [time.monotonic() + period_s, period_s, fn]
        with self._lock:
            self._timers.append(timer)
        return timer

    @staticmethod
    def connected(link: Link) -> None:
        link.backoff.reset()

    def start(self) -> Mux:
        self._thread = threading.Thread(target=self.run, name="edgefleet-mqtt", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(10)

    def _connect(self, link: Link, now: float) -> None:
        c = link.client
        try:
            if not link.started:
                c.connect(link.host, link.port, link.keepalive, **link.connect_kwargs)
                link.started = True
            else:
                c.reconnect()
            link.attempt_at = now
            # The delay resets only on an accepted CONNACK (see connected()), so a broker
            # refusing credentials is retried with backoff, not hammered.
            link.next_attempt = now + link.backoff.ceiling
        except (OSError, ValueError) as e:
            log.debug("connect to %s:%s failed: %s", link.host, link.port, e)
            link.next_attempt = now + link.backoff.next()

    def _step(self) -> None:
        now = time.monotonic()
        with self._lock:
            links = list(self._links)
            timers = list(self._timers)
        poller = select.poll()
        by_fd: dict[int, Link] = {}
        for link in links:
            sock = link.client.socket()
            if sock is None:
                if now >= link.next_attempt and not link.closed:
                    self._connect(link, now)
                    sock = link.client.socket()
                if sock is None:
                    continue
            fd = sock.fileno()
            if fd < 0:  # closed under us (agent stopping); never poison the whole poll
                continue
            by_fd[fd] = link
            poller.register(fd, select.POLLIN | (select.POLLOUT if link.client.want_write() else 0))
        poller.register(self._r, select.POLLIN)
        due = min([t[0] for t in timers], default=now + self.tick_s)
        timeout = max(0.0, min(due - now, self.tick_s))
        for fd, ev in poller.poll(timeout * 1000):
            if fd == self._r:
                try:
                    while os.read(self._r, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            link = by_fd[fd]
            c = link.client
            if ev & (select.POLLIN | select.POLLERR | select.POLLHUP):
                c.loop_read()
            if ev & select.POLLOUT and c.socket() is not None:
                c.loop_write()
            if c.socket() is None:
                link.next_attempt = time.monotonic() + link.backoff.next()
        now = time.monotonic()
        # Keepalive/timeouts need no finer grain than tick_s; every publish wakes this loop,
        # and a loop_misc sweep over 500 simulated clients per wake was most of its CPU.
        misc = now >= self._misc_due
        if misc:
            self._misc_due = now + self.tick_s
        for link in links:
            if link.client.socket() is not None:
                if misc:
                    link.client.loop_misc()
                if link.client.want_write():
                    link.client.loop_write()
        for t in timers:
            if now >= t[0]:
                t[0] = now + t[1]
                try:
                    t[2]()
                except Exception:
                    log.exception("periodic task failed")

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                log.exception("mqtt loop error")
                time.sleep(self.tick_s)
