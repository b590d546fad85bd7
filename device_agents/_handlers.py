"""What the agent does with commands, health probes and telemetry ticks (mixed into Agent).

Kept apart from ``_agent`` (session, publishing, lifecycle) to keep both modules small.

Delivery semantics: a command is acknowledged once it is verified and, for work that waits
for the worker (deploy, rollback, benchmark), persisted in ``pending.json``; so a deploy
queued behind another survives a restart and runs then (we persist rather than answer
"busy": the fleet needs no retry logic). A redelivered copy of an accepted command (same
nonce, same signed bytes; the digest is kept with the nonce across restarts) gets the same
accepted ack again and is not run twice; the same nonce on any other command is a replay.
"""

from __future__ import annotations

import logging

from edgefleet.sdk import EdgefleetError
from edgefleet.sdk.protocol import (
    BenchmarkCommand,
    CancelCommand,
    CommandAck,
    CommandBase,
    CommandRejected,
    ConfigCommand,
    DeployCommand,
    DeploymentEvent,
    DeploymentState,
    DuplicateCommand,
    ErrorEvent,
    ProtocolError,
    RollbackCommand,
    cmd_topic,
    decode,
    encode,
    events_topic,
    telemetry_topic,
)

from ._commands import run_benchmark
from ._fsutil import write_json_atomic
from ._journal import DeploymentRecord
from ._telemetry import system_sample

__all__ = ["AgentHandlers"]

log = logging.getLogger(__name__)

# Commands that wait for the worker (one job at a time) and so are persisted meanwhile.
_QUEUED_COMMANDS = (DeployCommand, RollbackCommand, BenchmarkCommand)


class AgentHandlers:
    """Command handling, health and telemetry for :class:`~._agent.Agent` (uses its state)."""

    def _emit(self, rec: DeploymentRecord, prev, progress) -> None:
        cmd = rec.command
        event = DeploymentEvent(
            device_id=self.device_id,
            deployment_id=cmd.deployment_id,
            state=rec.state,
            previous_state=prev,
            package_name=cmd.package_name,
            package_version=cmd.package_version,
            slot=rec.to_slot,
            reason=rec.reason[:2000],
            progress=progress,
        )
        log.info("%s: deployment %s -> %s %s", self.device_id, cmd.deployment_id,
                 rec.state.value, rec.reason)  # fmt: skip
        self.publish(events_topic(self.device_id), event)
        # The event carries every step; the retained state only changes for the fleet when
        # the slots do. Staging fills a slot; the final state (slots, pointer, outcome) is
        # published by the worker when the job ends (Agent._drain), where every deployment
        # step runs. One state per step was 5 extra messages per deploy for both sides.
        if rec.state == DeploymentState.STAGED:
            self.publish_state()

    def ack(self, cmd, accepted: bool, reason: str = "", detail: str = "", result=None) -> None:
        self.publish(
            events_topic(self.device_id),
            CommandAck(
                device_id=self.device_id,
                command_id=cmd.command_id,
                action=cmd.type,
                accepted=accepted,
                reason=reason,
                detail=detail[:2000],
                result=result or {},
            ),
        )

    # -- commands
    def handle(self, topic: str, payload: bytes) -> None:
        expected = cmd_topic(self.device_id)
        try:
            cmd = decode(topic, payload)
            # decode() checks a message against its own topic; here only a command on this
            # device's command topic is acceptable (anything else would crash the handler).
            if topic != expected or not isinstance(cmd, CommandBase):
                raise ProtocolError(
                    f"expected a command on {expected}, got a {getattr(cmd, 'type', '?')!r} "
                    f"message on {topic}"
                )
        except (ProtocolError, ValueError) as e:
            log.warning("%s: malformed command: %s", self.device_id, e)
            self.publish(
                events_topic(self.device_id),
                ErrorEvent(
                    device_id=self.device_id, code="malformed", message=str(e)[:2000], topic=topic
                ),  # fmt: skip
            )
            return
        try:
            try:
                verifier = self.verifier
            except (EdgefleetError, ValueError, OSError) as e:  # unreadable key file
                raise CommandRejected("no_trusted_key", f"fleet key unusable: {e}") from e
            if verifier is None:
                raise CommandRejected("no_trusted_key", "no fleet key configured on this device")
            verifier.verify(cmd)
        except DuplicateCommand:
            # A QoS 1 redelivery (e.g. after a reconnect) of a command already taken: the same
            # ack again, so the fleet hears the answer it may have missed; never run it twice.
            log.info("%s: command %s delivered again; acknowledged, not re-run",
                     self.device_id, cmd.command_id)  # fmt: skip
            self.ack(cmd, True)
            return
        except CommandRejected as e:
            log.warning("%s: command %s refused: %s", self.device_id, cmd.command_id, e)
            self.ack(cmd, False, e.reason, str(e))
            if isinstance(cmd, DeployCommand):
                rec = DeploymentRecord(
                    command=cmd, state=DeploymentState.REJECTED, reason=str(e),
                    updated_at=cmd.issued_at,
                )  # fmt: skip
                self._emit_only(rec)
            return
        if isinstance(cmd, _QUEUED_COMMANDS):
            # Persisted before the ack: an accepted command survives a restart while it waits.
            self.pending.add(cmd)
        self.ack(cmd, True)
        self._dispatch(cmd)

    def _dispatch(self, cmd) -> None:
        if isinstance(cmd, DeployCommand):
            self.submit(self._run_pending, self.deployer.deploy, cmd)
        elif isinstance(cmd, CancelCommand):
            self.deployer.hooks.canceled.add(cmd.deployment_id)
        elif isinstance(cmd, RollbackCommand):
            self.submit(self._run_pending, self._rollback, cmd)
        elif isinstance(cmd, BenchmarkCommand):
            self.submit(self._run_pending, self._benchmark, cmd)
        elif isinstance(cmd, ConfigCommand):
            self._configure(cmd)

    def _run_pending(self, fn, cmd) -> None:
        try:
            fn(cmd)
        finally:
            # Only once done: a deploy killed half-way resumes from the journal, and
            # resume_pending() skips the deploy the journal already holds.
            self.pending.remove(cmd.nonce)

    def resume_pending(self) -> None:
        """After a restart (worker, after the journal's resume): run what was waiting."""
        rec = self.journal.load()
        for cmd in self.pending.load():
            if isinstance(cmd, DeployCommand) and rec and rec.deployment_id == cmd.deployment_id:
                self.pending.remove(cmd.nonce)  # started before the restart: journal has it
                continue
            log.info("%s: running %s %s accepted before the restart", self.device_id,
                     cmd.type, cmd.command_id)  # fmt: skip
            self._dispatch(cmd)

    def _emit_only(self, rec: DeploymentRecord) -> None:
        cmd = rec.command
        self.publish(
            events_topic(self.device_id),
            DeploymentEvent(
                device_id=self.device_id, deployment_id=cmd.deployment_id, state=rec.state,
                package_name=cmd.package_name, package_version=cmd.package_version,
                reason=rec.reason[:2000],
            ),
        )  # fmt: skip

    def _rollback(self, cmd: RollbackCommand) -> None:
        p = self.store.pointer()
        if p is None or p.previous is None or not self.store.has_package(p.previous):
            self.ack(cmd, False, "no_previous", "no previous model to roll back to")
            return
        undone = self.store.slot_info(p.slot)
        self.store.activate(p.previous)
        self.publish(
            events_topic(self.device_id),
            DeploymentEvent(
                device_id=self.device_id,
                deployment_id=cmd.deployment_id or (undone.deployment_id if undone else "") or "-",
                state=DeploymentState.ROLLED_BACK,
                package_name=undone.package_name if undone else "",
                package_version=undone.package_version if undone else "",
                slot=p.previous,
                reason="rollback requested by the fleet",
            ),
        )

    def _benchmark(self, cmd: BenchmarkCommand) -> None:
        slot = self.store.active_slot() if cmd.slot == "active" else cmd.slot
        try:
            result = run_benchmark(self.store, slot, cmd, self.policy(), self.settings.backend)
        except Exception as e:
            self.ack(cmd, False, "benchmark_failed", str(e))
            return
        self.ack(cmd, True, detail="benchmark", result=result)

    def _configure(self, cmd: ConfigCommand) -> None:
        if cmd.telemetry_interval_s is not None:
            self.telemetry_interval_s = cmd.telemetry_interval_s
            if self._timer is not None:
                self._timer[1] = cmd.telemetry_interval_s
                self._timer[0] = min(self._timer[0], self._timer[1])
        if cmd.cache_entries is not None or cmd.cache_bytes is not None:
            self.cache_entries = cmd.cache_entries if cmd.cache_entries is not None else (
                self.cache_entries)  # fmt: skip
            self.cache_bytes = cmd.cache_bytes if cmd.cache_bytes is not None else self.cache_bytes
            self.active.set_cache(self._cache())
        write_json_atomic(
            self.config_path,
            {
                "telemetry_interval_s": self.telemetry_interval_s,
                "cache_entries": self.cache_entries,
                "cache_bytes": self.cache_bytes,
            },
        )

    # -- health
    def _probe(self) -> bool:
        if not self.settings.serve_model:
            return True
        try:
            model = self.active.refresh(force=True)
            return model is not None and model.smoke_test().passed
        except Exception as e:
            log.warning("%s: health probe failed: %s", self.device_id, e)
            return False

    def _traffic(self) -> tuple[int, int]:
        return self.endpoint.traffic() if self.endpoint is not None else (0, 0)

    # -- telemetry (mux thread)
    def tick(self) -> None:
        if self._process is None:
            import psutil

            self._process = psutil.Process()
            self._process.cpu_percent(None)
        model = self.active.loaded
        snap = model.metrics.snapshot(reset=True) if model is not None else None
        label = f"{model.info.name}@{model.info.version}" if model is not None else None
        sample = system_sample(self._process, snap, label)
        if self.adapter is not None:
            sample = sample.model_copy(update=self.adapter.telemetry())
        with self._tel_lock:
            if self._closed:
                return
            self.queue.append(sample)
        self._send_telemetry()

    def _send_telemetry(self) -> None:
        if not self.connected.is_set() or self._stopping:
            return
        with self._tel_lock:
            if self._closed or self._inflight is not None:
                return
            pending = self.queue.next_batch(self.settings.telemetry_batch_max)
            if pending is None:
                return
            info = self.client.publish(
                telemetry_topic(self.device_id), encode(pending.batch), qos=1
            )
            self._inflight = (info.mid, pending)
