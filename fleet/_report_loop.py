"""The device-report loop: state, inventory, deployment events and command acks from the
MQTT bridge, applied to the database in batches on one thread (telemetry has its own
writer). A batch that made a rollout progress calls ``on_progress`` (wakes the engine)."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from edgefleet.sdk.protocol import (
    TERMINAL_STATES,
    CommandAck,
    DeploymentEvent,
    Inventory,
    State,
)
from sqlalchemy import select

from ._context import Context
from ._db import Device
from ._deployment_reports import apply_event, prefetch, reject, rollout_of
from ._devices import apply_inventory, apply_state
from ._isolate import write_isolating

__all__ = ["ReportLoop"]

log = logging.getLogger(__name__)


class ReportLoop:
    def __init__(self, ctx: Context, on_progress: Callable[[], None] = lambda: None) -> None:
        self.ctx = ctx
        self.on_progress = on_progress
        self.inbox: queue.Queue = queue.Queue(maxsize=200_000)
        self._thread: threading.Thread | None = None

    def put(self, msg: object) -> None:
        """Queue a decoded report (the MQTT bridge's ``on_message``; never blocks)."""
        self.inbox.put_nowait(msg)

    def start(self) -> ReportLoop:
        self._thread = threading.Thread(target=self._loop, name="fleet-ingest", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def sync(self, timeout: float = 10.0) -> None:
        """Wait until every report queued so far is in the database."""
        ev = threading.Event()
        self.inbox.put(ev)
        if not ev.wait(timeout):
            raise TimeoutError("ingest did not catch up")

    def _loop(self) -> None:
        while True:
            item = self.inbox.get()
            batch = [item]
            while len(batch) < 1000:
                try:
                    batch.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            msgs = [m for m in batch if m is not None and not isinstance(m, threading.Event)]
            try:
                # A message the store refuses costs only itself (split, counted, dropped).
                write_isolating(
                    self.apply,
                    msgs,
                    metrics=self.ctx.metrics,
                    path="reports",
                    describe=lambda m: f"{m.type} of device {getattr(m, 'device_id', '?')!r}",
                )
            except Exception:  # keep ingesting; a batch lost to a database outage is counted
                log.exception("ingesting %d messages failed; dropped", len(msgs))
                self.ctx.metrics.inc("edgefleet_fleet_ingest_errors_total")
            for m in batch:
                if isinstance(m, threading.Event):
                    m.set()
            if any(m is None for m in batch):
                return

    def apply(self, msgs: list) -> None:
        """Apply one batch of reports in one transaction."""
        now = self.ctx.clock()
        progressed = False
        with self.ctx.Session() as db, db.no_autoflush:
            # Prefetch everything the batch touches: one query instead of one per message.
            ids = {m.device_id for m in msgs if isinstance(m, State | Inventory)}
            known = {d.id: d for d in db.scalars(select(Device).where(Device.id.in_(ids)))}
            pairs = {
                (rid, m.device_id)
                for m in msgs
                if (isinstance(m, DeploymentEvent) or _outcome_in_state(m))
                and (rid := rollout_of(m.deployment_id)) is not None
            }
            rds = prefetch(db, pairs)
            for m in msgs:
                if isinstance(m, State):
                    if apply_state(db, m, known) is not None and _outcome_in_state(m):
                        # The retained state carries how the last deployment ended: a fleet
                        # that was down (or missed the event) catches up from it.
                        progressed |= apply_event(
                            db, m.device_id, m.deployment_id, m.deployment_state.value,
                            "", now, rds,
                        )  # fmt: skip
                elif isinstance(m, Inventory):
                    apply_inventory(db, m, known)
                elif isinstance(m, DeploymentEvent):
                    progressed |= apply_event(
                        db, m.device_id, m.deployment_id, m.state.value, m.reason, now, rds
                    )
                elif isinstance(m, CommandAck) and not m.accepted:
                    log.warning(
                        "device %s refused %s %s: %s %s",
                        m.device_id,
                        m.action,
                        m.command_id,
                        m.reason,
                        m.detail,
                    )
                    # "replayed" = a QoS 1 redelivery of a command the device already took.
                    if m.action == "cmd.deploy" and m.reason != "replayed":
                        progressed |= reject(
                            db, m.device_id, m.command_id, f"{m.reason}: {m.detail}", now
                        )
            db.commit()
        self.ctx.metrics.inc("edgefleet_fleet_ingested_total", len(msgs))
        if progressed:
            self.on_progress()


def _outcome_in_state(m: object) -> bool:
    """A device State reporting a finished deployment (in-flight steps come as events)."""
    return (
        isinstance(m, State)
        and m.online
        and m.deployment_id is not None
        and m.deployment_state in TERMINAL_STATES
    )
