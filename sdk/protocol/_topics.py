"""Topic builders and parsers: the only place edgefleet topic strings are made.

Device ids are validated before they become part of a topic, so a hostile id cannot add
levels (``/``) or wildcards (``+``, ``#``) to a subscription or publication.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ._device_id import validate_device_id
from ._errors import ProtocolError

__all__ = [
    "TOPIC_ROOT",
    "DEVICE_KINDS",
    "DeviceTopicKind",
    "FLEET_STATE_TOPIC",
    "TopicInfo",
    "device_topic",
    "state_topic",
    "inventory_topic",
    "cmd_topic",
    "events_topic",
    "telemetry_topic",
    "fleet_state_topic",
    "device_filter",
    "shared_filter",
    "parse_topic",
]

TOPIC_ROOT = "edgefleet/v1"
DeviceTopicKind = Literal["state", "inventory", "cmd", "events", "telemetry"]
DEVICE_KINDS: tuple[str, ...] = ("state", "inventory", "cmd", "events", "telemetry")
FLEET_STATE_TOPIC = f"{TOPIC_ROOT}/fleet/state"

_SHARE_GROUP_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _check_kind(kind: str) -> None:
    if kind not in DEVICE_KINDS:
        raise ProtocolError(f"unknown device topic kind {kind!r}: expected one of {DEVICE_KINDS}")


def device_topic(device_id: str, kind: DeviceTopicKind) -> str:
    _check_kind(kind)
    return f"{TOPIC_ROOT}/devices/{validate_device_id(device_id)}/{kind}"


def state_topic(device_id: str) -> str:
    return device_topic(device_id, "state")


def inventory_topic(device_id: str) -> str:
    return device_topic(device_id, "inventory")


def cmd_topic(device_id: str) -> str:
    return device_topic(device_id, "cmd")


def events_topic(device_id: str) -> str:
    return device_topic(device_id, "events")


def telemetry_topic(device_id: str) -> str:
    return device_topic(device_id, "telemetry")


def fleet_state_topic() -> str:
    return FLEET_STATE_TOPIC


def device_filter(kind: DeviceTopicKind) -> str:
    """Subscription filter for one kind of topic of every device, e.g. ``.../devices/+/state``."""
    _check_kind(kind)
    return f"{TOPIC_ROOT}/devices/+/{kind}"


def shared_filter(kind: DeviceTopicKind, group: str = "fleet") -> str:
    """Shared-subscription filter (``$share/GROUP/...``) so fleet replicas split ingestion."""
    if not _SHARE_GROUP_RE.match(group):
        raise ProtocolError(f"invalid shared subscription group {group!r}")
    return f"$share/{group}/{device_filter(kind)}"


@dataclass(frozen=True)
class TopicInfo:
    """A parsed topic. ``device_id`` is None for the fleet state topic."""

    kind: Literal["state", "inventory", "cmd", "events", "telemetry", "fleet_state"]
    device_id: str | None = None


def parse_topic(topic: str) -> TopicInfo:
    """Parse a concrete (non-wildcard) edgefleet topic; raise ProtocolError otherwise."""
    if not isinstance(topic, str):
        raise ProtocolError(f"expected a topic string, got {type(topic).__name__}")
    if topic == FLEET_STATE_TOPIC:
        return TopicInfo(kind="fleet_state")
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != f"{TOPIC_ROOT}/devices":
        raise ProtocolError(
            f"unknown topic {topic!r}: expected {TOPIC_ROOT}/devices/<id>/<kind> "
            f"or {FLEET_STATE_TOPIC}"
        )
    device_id, kind = parts[3], parts[4]
    validate_device_id(device_id)
    _check_kind(kind)
    return TopicInfo(kind=kind, device_id=device_id)  # type: ignore[arg-type]
