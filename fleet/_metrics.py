"""Process-local counters and gauges rendered in the Prometheus text format (v0.0.4).

A dependency-free registry: the fleet exposes a handful of counters, so the official
client library would add install weight for no gain.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

__all__ = ["Metrics"]

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
