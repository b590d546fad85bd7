"""Telemetry from the agent: a sample per tick into the on-disk queue, and one batch at a
time on the wire (QoS 1); a batch leaves the queue only once the broker acknowledged it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from edgefleet.sdk.protocol import encode, telemetry_topic

from ._active import ActiveModel
from ._telemetry_queue import PendingBatch, TelemetryQueue, system_sample

__all__ = ["TelemetrySender"]

log = logging.getLogger(__name__)


class TelemetrySender:
    """``publish(topic, payload, qos)`` returns paho's MQTTMessageInfo; ``ready()`` says
    whether the session may send now (connected, not stopping)."""

    def __init__(
        self,
        queue: TelemetryQueue,
        active: ActiveModel,
        batch_max: int,
        *,
        publish: Callable[[str, bytes, int], object],
        ready: Callable[[], bool],
        extra: Callable[[], dict | None] = lambda: None,
    ) -> None:
        self.queue = queue
        self.device_id = queue.device_id
        self.active, self.batch_max = active, batch_max
        self.publish, self.ready = publish, ready
        self.extra = extra  # more sample fields, e.g. the resource adapter's state
        self._inflight: tuple[int, PendingBatch] | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._process = None

    def tick(self) -> None:
        """Mux timer: queue one sample (system figures + the model's metrics), then send."""
        if self._process is None:
            import psutil

            self._process = psutil.Process()
            self._process.cpu_percent(None)
        model = self.active.loaded
        snap = model.metrics.snapshot(reset=True) if model is not None else None
        label = f"{model.info.name}@{model.info.version}" if model is not None else None
        sample = system_sample(self._process, snap, label)
        if fields := self.extra():
            sample = sample.model_copy(update=fields)
        with self._lock:
            if self._closed:
                return
            self.queue.append(sample)
        self.send()

    def send(self) -> None:
        if not self.ready():
            return
        with self._lock:
            if self._closed or self._inflight is not None:
                return
            pending = self.queue.next_batch(self.batch_max)
            if pending is None:
                return
            info = self.publish(telemetry_topic(self.device_id), encode(pending.batch), 1)
            self._inflight = (info.mid, pending)

    def on_publish(self, mid: int) -> None:
        """The broker acknowledged ``mid``: drop that batch from the queue, send the next."""
        with self._lock:
            inflight = self._inflight
            if self._closed or inflight is None or inflight[0] != mid:
                return
            self._inflight = None
            self.queue.ack(inflight[1])
        self.send()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self.queue.close()
