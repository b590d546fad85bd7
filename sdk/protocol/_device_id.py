"""The one device-id rule, used by every entry point that takes a device id.

Topics, wire messages, signed commands, the agent's settings and the fleet's API, MQTT
ingest and broker config all check ids with :func:`validate_device_id` (or, where a
library wants a regular expression, :data:`DEVICE_ID_PATTERN`), so they cannot disagree.
An id is 1-64 characters of ``A-Z a-z 0-9 . _ -`` and not ``.`` or ``..``: ids become
topic levels (no ``/``, ``+``, ``#``) and directory names (no ``..``) on the fleet and in
the simulator.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

from ._errors import ProtocolError

__all__ = ["DEVICE_ID_PATTERN", "DeviceId", "is_valid_device_id", "validate_device_id"]

# Written without look-ahead so pydantic's (Rust) regex engine and OpenAPI clients accept
# it too: a first character that is not a dot, or "." + a non-dot, or ".." + at least one.
DEVICE_ID_PATTERN = (
    r"^(?:[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}"
    r"|\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,62}"
    r"|\.\.[A-Za-z0-9._-]{1,62})$"
)
_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)


def is_valid_device_id(device_id: object) -> bool:
    # fullmatch: "$" alone would let a trailing newline through.
    return isinstance(device_id, str) and _DEVICE_ID_RE.fullmatch(device_id) is not None


def validate_device_id(device_id: object) -> str:
    """Return ``device_id`` if valid, else raise :class:`ProtocolError` (a ValueError, so
    pydantic validators can call it as is) naming what was expected and what came."""
    if not is_valid_device_id(device_id):
        raise ProtocolError(
            f"invalid device id {device_id!r}: expected 1-64 characters of "
            "A-Z a-z 0-9 . _ - other than '.' and '..'"
        )
    return device_id  # type: ignore[return-value]


# A pydantic field type: ``device_id: DeviceId`` in every model that carries one.
DeviceId = Annotated[str, AfterValidator(validate_device_id)]
