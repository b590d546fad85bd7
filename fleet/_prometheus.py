"""Process-local counters and gauges rendered in the Prometheus text format (v0.0.4).

A dependency-free registry: the fleet exposes a handful of counters, so the official
client library would add install weight for no gain.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

__all__ = ["Metrics", "register_fleet_metrics"]

log = logging.getLogger(__name__)

_LABEL_RE = re.compile(r'[\\"\n]')


def _esc(v: str) -> str:
    return _LABEL_RE.sub(lambda m: {"\\": "\\\\", '"': '\\"', "\n": "\\n"}[m.group()], v)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._help: dict[str, tuple[str, str]] = {}
        self._gauges: dict[str, Callable[[], dict[tuple[tuple[str, str], ...], float]]] = {}

    def describe(self, name: str, kind: str, text: str) -> None:
        self._help[name] = (kind, text)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + value

    def get(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def gauge(self, name: str, text: str, fn: Callable[[], dict]) -> None:
        """Register a gauge computed at scrape time: ``fn() -> {labels tuple: value}``."""
        self._help[name] = ("gauge", text)
        self._gauges[name] = fn

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            counters = dict(self._counters)
        by_name: dict[str, list[tuple[tuple[tuple[str, str], ...], float]]] = {}
        for (name, labels), v in counters.items():
            by_name.setdefault(name, []).append((labels, v))
        for name, fn in self._gauges.items():
            try:
                by_name[name] = list(fn().items())
            except Exception:  # a broken gauge must not take /metrics down
                log.exception("gauge %s failed", name)
        for name in sorted(by_name):
            kind, text = self._help.get(name, ("counter", name))
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, v in sorted(by_name[name]):
                lab = ",".join(f'{k}="{_esc(str(val))}"' for k, val in labels)
                lines.append(f"{name}{{{lab}}} {v:g}" if lab else f"{name} {v:g}")
        return "\n".join(lines) + "\n"


def register_fleet_metrics(m: Metrics, ReadSession, queue_size: Callable[[], int]) -> None:
    """Describe the fleet's counters and register its scrape-time gauges."""
    from sqlalchemy import func, select

    from ._db import Device, Rollout

    m.describe("edgefleet_fleet_mqtt_messages_total", "counter", "MQTT messages received")
    m.describe("edgefleet_fleet_mqtt_rejected_total", "counter", "MQTT payloads dropped, by reason")
    m.describe("edgefleet_fleet_telemetry_rows_total", "counter", "telemetry rows stored")
    m.describe(
        "edgefleet_fleet_poison_dropped_total",
        "counter",
        "single device messages or rows the store refused, dropped alone, by path",
    )
    m.describe(
        "edgefleet_fleet_ingest_restarts_total",
        "counter",
        "telemetry reader reconnects after an error, by error type",
    )
    m.describe("edgefleet_fleet_commands_sent_total", "counter", "signed commands published")
    m.describe("edgefleet_fleet_http_requests_total", "counter", "HTTP requests by status")

    def devices() -> dict:
        with ReadSession() as db:
            rows = db.execute(
                select(Device.online, func.count())
                .where(Device.decommissioned.is_(False))
                .group_by(Device.online)
            ).all()
        return {(("online", str(bool(o)).lower()),): float(n) for o, n in rows}

    def rollouts() -> dict:
        with ReadSession() as db:
            rows = db.execute(select(Rollout.status, func.count()).group_by(Rollout.status))
            return {(("status", st),): float(n) for st, n in rows}

    m.gauge("edgefleet_fleet_devices", "known devices by online state", devices)
    m.gauge("edgefleet_fleet_rollouts", "rollouts by status", rollouts)
    m.gauge(
        "edgefleet_fleet_ingest_queue",
        "messages waiting for ingest",
        lambda: {(): float(queue_size())},
    )
