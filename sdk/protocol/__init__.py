"""The wire protocol shared by the device agent and the fleet (DESIGN.md section 4).

Topic builders/parsers, pydantic message models in one discriminated union, a JSON codec
with clear errors, and signed commands. No MQTT client lives here.

>>> from edgefleet.sdk import protocol as p
>>> p.state_topic("pi-7")
'edgefleet/v1/devices/pi-7/state'
>>> msg = p.decode(topic, payload)   # raises p.ProtocolError on anything malformed
"""

from ._codec import ALLOWED_TYPES, MAX_PAYLOAD_BYTES, decode, encode, parse_message, upgrade
from ._command_auth import (
    CommandVerifier,
    MemoryNonceStore,
    NonceStore,
    command_digest,
    command_fields,
    new_nonce,
    sign_command,
)
from ._command_messages import (
    BenchmarkCommand,
    CancelCommand,
    Command,
    CommandBase,
    CommandSignature,
    ConfigCommand,
    DeployCommand,
    ManifestSignature,
    RollbackCommand,
)
from ._device_id import DEVICE_ID_PATTERN, DeviceId, is_valid_device_id, validate_device_id
from ._errors import CommandRejected, DuplicateCommand, ProtocolError
from ._message_base import (
    MIN_SCHEMA_VERSION,
    PROTOCOL_SCHEMA_VERSION,
    TERMINAL_STATES,
    DeploymentState,
    SlotName,
    utcnow,
)
from ._messages import (
    CommandAck,
    DeploymentEvent,
    ErrorEvent,
    Event,
    FleetState,
    GenerationTelemetry,
    Inventory,
    Message,
    ResourceEvent,
    SlotInfo,
    State,
    TelemetryBatch,
    TelemetrySample,
)
from ._safety import MAX_ABS_FLOAT, MAX_ABS_INT, MAX_COUNT, loads_untrusted
from ._schema import SCHEMA_PATH, message_schema, schema_text, write_schema
from ._tickets import TICKET_RENEW_PATH, redact_tickets
from ._topics import (
    DEVICE_KINDS,
    FLEET_STATE_TOPIC,
    TOPIC_ROOT,
    TopicInfo,
    cmd_topic,
    device_filter,
    device_topic,
    events_topic,
    fleet_state_topic,
    inventory_topic,
    parse_topic,
    shared_filter,
    state_topic,
    telemetry_topic,
)
from ._windows import WAITING_FOR_WINDOW, MaintenanceWindow, next_window_start, window_open

__all__ = [
    "DEVICE_ID_PATTERN",
    "DeviceId",
    "TICKET_RENEW_PATH",
    "redact_tickets",
    "ALLOWED_TYPES",
    "DEVICE_KINDS",
    "FLEET_STATE_TOPIC",
    "MAX_ABS_FLOAT",
    "MAX_ABS_INT",
    "MAX_COUNT",
    "MAX_PAYLOAD_BYTES",
    "MIN_SCHEMA_VERSION",
    "PROTOCOL_SCHEMA_VERSION",
    "SCHEMA_PATH",
    "TERMINAL_STATES",
    "TOPIC_ROOT",
    "WAITING_FOR_WINDOW",
    "BenchmarkCommand",
    "CancelCommand",
    "Command",
    "CommandAck",
    "CommandBase",
    "CommandRejected",
    "CommandSignature",
    "CommandVerifier",
    "ConfigCommand",
    "DeployCommand",
    "DeploymentEvent",
    "DeploymentState",
    "DuplicateCommand",
    "ErrorEvent",
    "Event",
    "ResourceEvent",
    "FleetState",
    "Inventory",
    "MaintenanceWindow",
    "ManifestSignature",
    "MemoryNonceStore",
    "Message",
    "NonceStore",
    "ProtocolError",
    "RollbackCommand",
    "SlotInfo",
    "SlotName",
    "State",
    "TelemetryBatch",
    "TelemetrySample",
    "GenerationTelemetry",
    "TopicInfo",
    "cmd_topic",
    "command_digest",
    "command_fields",
    "decode",
    "device_filter",
    "device_topic",
    "encode",
    "events_topic",
    "fleet_state_topic",
    "inventory_topic",
    "is_valid_device_id",
    "loads_untrusted",
    "message_schema",
    "next_window_start",
    "new_nonce",
    "parse_message",
    "parse_topic",
    "schema_text",
    "shared_filter",
    "sign_command",
    "state_topic",
    "telemetry_topic",
    "upgrade",
    "utcnow",
    "validate_device_id",
    "window_open",
    "write_schema",
]
