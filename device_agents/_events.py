"""What the agent tells the fleet on its events topic: deployment steps, command acks and
malformed-command errors."""

from __future__ import annotations

import logging
from collections.abc import Callable

from edgefleet.sdk.protocol import (
    CommandAck,
    DeploymentEvent,
    DeploymentState,
    ErrorEvent,
    events_topic,
)

from ._journal import DeploymentRecord

__all__ = ["EventPublisher"]

log = logging.getLogger(__name__)


class EventPublisher:
    """``publish(topic, message)`` sends on the agent's session; ``publish_state()`` sends
    its retained state."""

    def __init__(
        self,
        device_id: str,
        publish: Callable[[str, object], object],
        publish_state: Callable[[], None],
    ) -> None:
        self.device_id = device_id
        self.topic = events_topic(device_id)
        self._publish = publish
        self.publish_state = publish_state

    def publish(self, msg: object) -> None:
        self._publish(self.topic, msg)

    def deployment(self, rec: DeploymentRecord, prev, progress) -> None:
        """A deployment step (the Deployer's ``emit`` hook)."""
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
        self.publish(event)
        # The event carries every step; the retained state only changes for the fleet when
        # the slots do. Staging fills a slot; the final state (slots, pointer, outcome) is
        # published by the worker when the job ends (WorkQueue's after_each), where every
        # deployment step runs. One state per step was 5 extra messages per deploy for both.
        if rec.state == DeploymentState.STAGED:
            self.publish_state()

    def outcome(self, rec: DeploymentRecord) -> None:
        """A deployment that ended before it started (refused): the event only."""
        cmd = rec.command
        self.publish(
            DeploymentEvent(
                device_id=self.device_id, deployment_id=cmd.deployment_id, state=rec.state,
                package_name=cmd.package_name, package_version=cmd.package_version,
                reason=rec.reason[:2000],
            ),
        )  # fmt: skip

    def ack(self, cmd, accepted: bool, reason: str = "", detail: str = "", result=None) -> None:
        self.publish(
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

    def malformed(self, topic: str, error: Exception) -> None:
        self.publish(
            ErrorEvent(
                device_id=self.device_id, code="malformed", message=str(error)[:2000], topic=topic
            ),
        )
