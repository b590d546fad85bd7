"""encode / decode: JSON bytes on the wire <-> validated messages, with clear errors."""

from __future__ import annotations

import functools
import logging
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from ._errors import ProtocolError
from ._message_base import MIN_SCHEMA_VERSION, PROTOCOL_SCHEMA_VERSION
from ._messages import Message
from ._safety import loads_untrusted
from ._topics import parse_topic

__all__ = ["MAX_PAYLOAD_BYTES", "ALLOWED_TYPES", "encode", "decode", "parse_message", "upgrade"]

log = logging.getLogger(__name__)

# Large enough for a full telemetry batch; small enough that a hostile publisher cannot make
# a device allocate much.
MAX_PAYLOAD_BYTES = 256 * 1024

ALLOWED_TYPES: dict[str, frozenset[str]] = {
    "state": frozenset({"state"}),
    "inventory": frozenset({"inventory"}),
    "cmd": frozenset({"cmd.deploy", "cmd.cancel", "cmd.rollback", "cmd.benchmark", "cmd.config"}),
    "events": frozenset({"event.deployment", "event.ack", "event.error", "event.resources"}),
    "telemetry": frozenset({"telemetry"}),
    "fleet_state": frozenset({"fleet_state"}),
}


@functools.cache
def _adapter() -> TypeAdapter[Any]:
    # Built on first decode, not at import (agent start-up time).
    return TypeAdapter(Message)


def encode(msg: BaseModel) -> bytes:
    """Compact UTF-8 JSON of a message."""
    data = msg.model_dump_json().encode()
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(
            f"{type(msg).__name__} encodes to {len(data)} bytes, over the {MAX_PAYLOAD_BYTES} "
            "byte limit; send fewer samples per batch"
        )
    return data


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an older payload to the current schema version.

    v1 -> v2: ``state`` carried ``models: {"A": slot|null, "B": slot|null}`` and
    ``active_slot``; v2 has a ``slots`` list with an ``active`` flag. ``telemetry`` had no
    ``dropped`` counter (v1 agents did not drop). Commands are not upgraded: their signature
    covers the exact bytes the fleet signed, so a v1 command is refused.
    """
    version = data.get("schema_version")
    if version == PROTOCOL_SCHEMA_VERSION:
        return data
    kind = data.get("type")
    if version == 1:
        if isinstance(kind, str) and kind.startswith("cmd."):
            raise ProtocolError(
                f"{kind} with schema_version 1 refused: commands must be schema_version "
                f"{PROTOCOL_SCHEMA_VERSION} (the signature covers the exact form)"
            )
        data = dict(data)
        if kind == "state" and "models" in data:
            models = data.pop("models") or {}
            active = data.get("active_slot")
            if not isinstance(models, dict):
                raise ProtocolError("v1 state: 'models' must be an object of slot -> model")
            data["slots"] = [
                {**m, "slot": slot, "active": slot == active}
                for slot, m in sorted(models.items())
                if isinstance(m, dict)
            ]
        data["schema_version"] = 2
        return data
    raise ProtocolError(
        f"unsupported schema_version {version!r}: this build reads "
        f"{MIN_SCHEMA_VERSION}..{PROTOCOL_SCHEMA_VERSION}"
    )


def _load(payload: bytes | bytearray | str) -> dict[str, Any]:
    if isinstance(payload, str):
        payload = payload.encode()
    if not isinstance(payload, bytes | bytearray):
        raise ProtocolError(f"expected payload bytes, got {type(payload).__name__}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(
            f"payload of {len(payload)} bytes is over the {MAX_PAYLOAD_BYTES} byte limit"
        )
    if not payload:
        raise ProtocolError("empty payload: expected a JSON object")
    data = loads_untrusted(payload)
    if not isinstance(data, dict):
        raise ProtocolError(f"expected a JSON object, got {type(data).__name__}")
    if "schema_version" not in data:
        raise ProtocolError("payload has no schema_version")
    if "type" not in data:
        raise ProtocolError("payload has no 'type' (the message kind)")
    return data


def parse_message(payload: bytes | bytearray | str) -> Any:
    """Decode a payload without a topic check (e.g. files, HTTP bodies)."""
    data = upgrade(_load(payload))
    try:
        return _adapter().validate_python(data)
    except ValidationError as e:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in e.errors()[:8]
        )
        raise ProtocolError(f"invalid {data.get('type')!r} message: {errors}") from e


def decode(topic: str, payload: bytes | bytearray | str) -> Any:
    """Decode a payload received on ``topic``: validates the topic, the payload, that the
    message type belongs on that topic and that its ``device_id`` matches the topic's."""
    info = parse_topic(topic)
    msg = parse_message(payload)
    if msg.type not in ALLOWED_TYPES[info.kind]:
        raise ProtocolError(
            f"a {msg.type!r} message does not belong on a {info.kind!r} topic "
            f"(expected one of {sorted(ALLOWED_TYPES[info.kind])})"
        )
    dev = getattr(msg, "device_id", None)
    if info.device_id is not None and dev != info.device_id:
        raise ProtocolError(
            f"message for device {dev!r} arrived on the topic of {info.device_id!r}"
        )
    return msg
