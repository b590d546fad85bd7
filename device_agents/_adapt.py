"""Serving that adapts to the device's resources (memory, pressure, heat, CPU load).

A watcher thread samples :func:`edgefleet.sdk.read_resources` and feeds a
:class:`~edgefleet.sdk.ResourceTracker` (hysteresis). On a level change it reacts:

- constrained: reload the active package with fewer intra-op threads and its smallest
  artifact for the same runtime (an int8 one when the package has it);
- critical: also shed load: the local endpoint answers 429 with Retry-After (nothing queued);
- normal again: the preferred artifact and the profile's threads.

Each change is reported through ``notify`` (the agent publishes it as an event) and the
latest figures are in :meth:`Adapter.telemetry` (the agent's telemetry samples).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefleet.sdk import (
    RESOURCE_LEVELS,
    ResourcePolicy,
    ResourceSample,
    ResourceTracker,
    constrained_options,
)
from edgefleet.sdk import read_resources as _read

from ._active import ActiveModel
from ._batcher import Overloaded

__all__ = ["AdaptOptions", "Adapter", "Switch", "resource_event", "start_adapter"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdaptOptions:
    policy: ResourcePolicy = field(default_factory=ResourcePolicy)
    interval_s: float = 0.5
    # Read the board files under this root (tests point it at a fake sysfs/procfs tree).
    root: Path = Path("/")
    constrained_threads: int = 1
    retry_after_s: float = 2.0
    # Swapped-out models stay open this long for the requests still running on them.
    retire_grace_s: float = 5.0


@dataclass(frozen=True)
class Switch:
    """One reaction: when the sample that caused it was taken and when serving changed."""

    level: str
    previous: str
    reasons: tuple[str, ...]
    sampled_at: float
    applied_at: float
    artifact: str
    threads: int | None

    @property
    def react_s(self) -> float:
        return self.applied_at - self.sampled_at


def _threads(model: Any, overrides: dict[str, Any]) -> int | None:
    """Intra-op threads the served model runs with (None: the runtime's default)."""
    backend = model.info.backend
    if backend in overrides:
        opts = overrides[backend]
        return getattr(opts, "intra_op_threads", None) or getattr(opts, "num_threads", None)
    sess = getattr(model._session, "_sess", None)  # ONNX Runtime reports its own
    if backend == "onnxruntime" and sess is not None:
        return sess.get_session_options().intra_op_num_threads or None
    return None


class Adapter:
    def __init__(
        self,
        active: ActiveModel,
        options: AdaptOptions = AdaptOptions(),
        notify: Callable[[Switch], None] | None = None,
    ) -> None:
        self.active = active
        self.options = options
        self.notify = notify
        self.tracker = ResourceTracker(options.policy)
        self.sample: ResourceSample | None = None
        self.switches: list[Switch] = []
        self.shed = 0
        self._constrained: Any = None  # the model the constrained set-up was applied to
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="edgefleet-adapt", daemon=True)
        active.retire_grace_s = options.retire_grace_s

    @property
    def level(self) -> str:
        return RESOURCE_LEVELS[self.tracker.level]

    def start(self) -> Adapter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def admit(self) -> None:
        """Called before each endpoint request: raises Overloaded while shedding."""
        if self.tracker.level >= 2:
            with self._lock:
                self.shed += 1
            why = "; ".join(self.tracker.reasons) or "resources critical"
            raise Overloaded(f"device resources critical ({why})", self.options.retry_after_s)

    def telemetry(self) -> dict[str, Any]:
        s = self.sample
        with self._lock:
            shed = self.shed
        return {
            "memory_used": s.memory_used if s else None,
            "memory_pressure": s.memory_pressure if s else None,
            "adaptation_level": self.tracker.level,
            "shed": shed,
        }

    def step(self) -> Switch | None:
        """Take one sample and react if the level changed (the thread calls this)."""
        sample = _read(self.options.root)
        self.sample = sample
        before = self.tracker.level
        if not self.tracker.update(sample):
            loaded = self.active.loaded
            if self.tracker.level and loaded is not None and loaded is not self._constrained:
                # A new package was activated meanwhile: constrain it too.
                self._constrained = self.active.adapt(
                    **constrained_options(loaded, self.options.constrained_threads)
                )
            return None
        return self._apply(before, sample)

    def _apply(self, before: int, sample: ResourceSample) -> Switch:
        level = self.tracker.level
        model = self.active.loaded or self.active.refresh()
        overrides: dict[str, Any] = {}
        if model is not None and (level == 0) != (before == 0):
            # Entering or leaving the constrained set-up: reload once, swap atomically.
            if level > 0:
                overrides = constrained_options(model, self.options.constrained_threads)
            model = self.active.adapt(**overrides)
            self._constrained = model if level > 0 else None
        switch = Switch(
            level=RESOURCE_LEVELS[level],
            previous=RESOURCE_LEVELS[before],
            reasons=tuple(self.tracker.reasons),
            sampled_at=sample.ts,
            applied_at=time.monotonic(),
            artifact=model.info.artifact.name if model is not None else "",
            threads=_threads(model, overrides) if model is not None else None,
        )
        self.switches.append(switch)
        log.warning("resources %s -> %s (%s): serving %s, threads %s",
                    switch.previous, switch.level, "; ".join(switch.reasons) or "calm",
                    switch.artifact, switch.threads)  # fmt: skip
        if self.notify is not None:
            try:
                self.notify(switch)
            except Exception as e:  # telling the fleet must never stop the adaptation
                log.warning("could not report the resource change: %s", e)
        return switch

    def _loop(self) -> None:
        while not self._stop.wait(self.options.interval_s):
            try:
                self.step()
            except Exception:
                log.exception("resource adaptation step failed")


def resource_event(device_id: str, switch: Switch):
    """The wire event for ``switch`` (the fleet's view of the change)."""
    from edgefleet.sdk.protocol import ResourceEvent

    return ResourceEvent(
        device_id=device_id,
        level=switch.level,
        previous_level=switch.previous,
        reasons=[r[:200] for r in switch.reasons[:16]],
        artifact=switch.artifact,
        threads=switch.threads,
        shedding=switch.level == "critical",
    )


def start_adapter(agent: Any, settings: Any) -> Adapter:
    """The agent's adapter: watches ``settings.resources_root``, publishes each change."""
    from edgefleet.sdk.protocol import events_topic

    def notify(switch: Switch) -> None:
        agent.publish(events_topic(agent.device_id), resource_event(agent.device_id, switch))

    opts = AdaptOptions(interval_s=settings.adapt_interval_s, root=settings.resources_root)
    return Adapter(agent.active, opts, notify).start()
