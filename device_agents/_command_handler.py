"""What the agent does with a command: decode, verify, acknowledge, persist, dispatch.

Delivery semantics: a command is acknowledged once it is verified and, for work that waits
for the worker (deploy, rollback, benchmark), persisted in ``pending.json``; so a deploy
queued behind another survives a restart and runs then (we persist rather than answer
"busy": the fleet needs no retry logic). A redelivered copy of an accepted command (same
nonce, same signed bytes; the digest is kept with the nonce across restarts) gets the same
accepted ack again and is not run twice; the same nonce on any other command is a replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from edgefleet.sdk import EdgefleetError
from edgefleet.sdk.protocol import (
    BenchmarkCommand,
    CancelCommand,
    CommandBase,
    CommandRejected,
    CommandVerifier,
    ConfigCommand,
    DeployCommand,
    DeploymentEvent,
    DeploymentState,
    DuplicateCommand,
    ProtocolError,
    RollbackCommand,
    cmd_topic,
    decode,
)

from ._benchmark import run_benchmark
from ._deploy import Deployer
from ._events import EventPublisher
from ._journal import DeploymentRecord, PendingCommands
from ._work_queue import WorkQueue

__all__ = ["CommandHandler"]

log = logging.getLogger(__name__)

# Commands that wait for the worker (one job at a time) and so are persisted meanwhile.
_QUEUED_COMMANDS = (DeployCommand, RollbackCommand, BenchmarkCommand)


class CommandHandler:
    """``verifier()`` gives the device's CommandVerifier (None: no fleet key configured);
    ``deployer`` runs deployments (and holds the store, journal and trust policy);
    ``configure(cmd)`` applies a config command."""

    def __init__(
        self,
        events: EventPublisher,
        verifier: Callable[[], CommandVerifier | None],
        pending: PendingCommands,
        work: WorkQueue,
        deployer: Deployer,
        configure: Callable[[ConfigCommand], None],
    ) -> None:
        self.events = events
        self.device_id = events.device_id
        self.verifier = verifier
        self.pending = pending
        self.work = work
        self.deployer = deployer
        self.store, self.journal, hooks = deployer.store, deployer.journal, deployer.hooks
        self.policy, self.backend = hooks.policy, deployer.settings.backend
        self.configure = configure

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
            self.events.malformed(topic, e)
            return
        try:
            try:
                verifier = self.verifier()
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
            self.events.ack(cmd, True)
            return
        except CommandRejected as e:
            log.warning("%s: command %s refused: %s", self.device_id, cmd.command_id, e)
            self.events.ack(cmd, False, e.reason, str(e))
            if isinstance(cmd, DeployCommand):
                rec = DeploymentRecord(
                    command=cmd, state=DeploymentState.REJECTED, reason=str(e),
                    updated_at=cmd.issued_at,
                )  # fmt: skip
                self.events.outcome(rec)
            return
        if isinstance(cmd, _QUEUED_COMMANDS):
            # Persisted before the ack: an accepted command survives a restart while it waits.
            self.pending.add(cmd)
        self.events.ack(cmd, True)
        self._dispatch(cmd)

    def _dispatch(self, cmd) -> None:
        if isinstance(cmd, DeployCommand):
            self.work.submit(self._run_pending, self.deployer.deploy, cmd)
        elif isinstance(cmd, CancelCommand):
            self.deployer.hooks.canceled.add(cmd.deployment_id)
        elif isinstance(cmd, RollbackCommand):
            self.work.submit(self._run_pending, self._rollback, cmd)
        elif isinstance(cmd, BenchmarkCommand):
            self.work.submit(self._run_pending, self._benchmark, cmd)
        elif isinstance(cmd, ConfigCommand):
            self.configure(cmd)

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

    def _rollback(self, cmd: RollbackCommand) -> None:
        p = self.store.pointer()
        if p is None or p.previous is None or not self.store.has_package(p.previous):
            self.events.ack(cmd, False, "no_previous", "no previous model to roll back to")
            return
        undone = self.store.slot_info(p.slot)
        self.store.activate(p.previous)
        self.events.publish(
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
            result = run_benchmark(self.store, slot, cmd, self.policy(), self.backend)
        except Exception as e:
            self.events.ack(cmd, False, "benchmark_failed", str(e))
            return
        self.events.ack(cmd, True, detail="benchmark", result=result)
