"""Telemetry payload -> store rows, with a fast path for well-formed current-version batches.

Validating a batch as the :class:`TelemetryBatch` model costs about twice a validation of
the same schema as TypedDicts: the model builds two objects per sample and runs Python field
validators. The fast path validates as TypedDicts that accept a subset of what the model
accepts (current schema version, bounded ints); anything it refuses, valid or not, goes
through the protocol's ``decode``, which stays the authority on what is accepted and says
what is wrong. A test keeps the two field sets equal.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal, NotRequired

from edgefleet.sdk.protocol import (
    MAX_ABS_FLOAT,
    MAX_COUNT,
    PROTOCOL_SCHEMA_VERSION,
    TOPIC_ROOT,
    ProtocolError,
    TelemetryBatch,
    decode,
    validate_device_id,
)
from pydantic import AwareDatetime, ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

__all__ = ["Row", "batch_rows", "TelemetryDecoder"]

log = logging.getLogger(__name__)

# (device_id, model, ts, seq, calls, errors, p50_ms, p95_ms, p99_ms, cache_hit_rate,
# ttft_p95_ms, decode_tps): the column order of TelemetryWriter.
Row = tuple

_PREFIX = f"{TOPIC_ROOT}/devices/".encode()
_SUFFIX = b"/telemetry"
_MAX_INT = 2**63 - 1  # larger ints fit pydantic, not a database INTEGER
_UInt = Annotated[int, Field(ge=0, le=_MAX_INT)]
_Count = NotRequired[Annotated[int, Field(ge=0, le=MAX_COUNT)]]
# The codec's number rules (sdk.protocol._safety): finite, within +-MAX_ABS_FLOAT.
_Float = NotRequired[
    Annotated[float, Field(allow_inf_nan=False, ge=-MAX_ABS_FLOAT, le=MAX_ABS_FLOAT)] | None
]


class _FastGeneration(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    ttft_p50_ms: NotRequired[Annotated[float, Field(ge=0)] | None]
    ttft_p95_ms: NotRequired[Annotated[float, Field(ge=0)] | None]
    decode_tokens_per_s: NotRequired[Annotated[float, Field(ge=0)] | None]
    tokens_generated: NotRequired[_UInt]
    prefix_cache_hits: NotRequired[_UInt]
    prefix_cache_misses: NotRequired[_UInt]


class _FastSample(TypedDict):
    """TelemetrySample without Python validators (AwareDatetime does ``_aware``'s check)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    ts: AwareDatetime
    model: NotRequired[str | None]
    calls: _Count
    errors: _Count
    latency_p50_ms: _Float
    latency_p95_ms: _Float
    latency_p99_ms: _Float
    cache_hits: _Count
    cache_misses: _Count
    cpu_percent: _Float
    rss_mb: _Float
    temperature_c: _Float
    memory_used: _Float
    memory_pressure: _Float
    adaptation_level: NotRequired[int | None]
    shed: NotRequired[_UInt | None]
    generation: NotRequired[_FastGeneration | None]


class _FastBatch(TypedDict):
    """TelemetryBatch, current schema version only; ``device_id`` is compared with the
    (validated) topic's instead of being matched against the pattern again."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    schema_version: Literal[2]
    type: Literal["telemetry"]
    device_id: str
    ts: NotRequired[AwareDatetime]
    seq: _UInt
    samples: Annotated[list[_FastSample], Field(max_length=1000)]
    dropped: NotRequired[_UInt]


# Built once, on first use (fleet start-up does not pay for it before telemetry arrives).
_fast_adapter: TypeAdapter[_FastBatch] | None = None


def _adapter() -> TypeAdapter[_FastBatch]:
    global _fast_adapter
    if _fast_adapter is None:
        _fast_adapter = TypeAdapter(_FastBatch)
    return _fast_adapter


def batch_rows(msg: TelemetryBatch) -> list[Row]:
    """Rows of a validated batch (the slow path's result, same values as the fast path)."""
    out = []
    for s in msg.samples:
        lookups = s.cache_hits + s.cache_misses
        out.append(
            (
                msg.device_id,
                s.model or "unknown",
                s.ts.timestamp(),
                msg.seq,
                s.calls,
                s.errors,
                s.latency_p50_ms,
                s.latency_p95_ms,
                s.latency_p99_ms,
                s.cache_hits / lookups if lookups else None,
                s.generation.ttft_p95_ms if s.generation else None,
                s.generation.decode_tokens_per_s if s.generation else None,
            )
        )
    return out


def _fast_rows(device_id: str, payload: bytes) -> list[Row] | None:
    """Rows if ``payload`` is plainly a valid batch of ``device_id``, else None."""
    if b"\\u0000" in payload:  # a NUL in a string: the slow path refuses it, with the reason
        return None
    try:
        d = _adapter().validate_json(payload)
    except ValidationError:
        return None
    if d["device_id"] != device_id or d["schema_version"] != PROTOCOL_SCHEMA_VERSION:
        return None
    seq = d["seq"]
    rows = []
    for s in d["samples"]:
        get = s.get
        hits = get("cache_hits", 0)
        lookups = hits + get("cache_misses", 0)
        gen = get("generation") or {}
        rows.append(
            (
                device_id,
                get("model") or "unknown",
                s["ts"].timestamp(),
                seq,
                get("calls", 0),
                get("errors", 0),
                get("latency_p50_ms"),
                get("latency_p95_ms"),
                get("latency_p99_ms"),
                hits / lookups if lookups else None,
                gen.get("ttft_p95_ms"),
                gen.get("decode_tokens_per_s"),
            )
        )
    return rows


class TelemetryDecoder:
    """Decodes (topic bytes, payload bytes) from a telemetry subscription into rows.

    ``rows`` raises :class:`ProtocolError` with the reason for anything invalid.
    """

    def __init__(self) -> None:
        self._ids: dict[bytes, str] = {}  # topic -> validated device id
        self.fast = 0
        self.slow = 0

    def _device(self, topic: bytes) -> str:
        dev = self._ids.get(topic)
        if dev is not None:
            return dev
        if not (topic.startswith(_PREFIX) and topic.endswith(_SUFFIX)):
            raise ProtocolError(f"unexpected topic {topic[:200]!r} on the telemetry subscription")
        try:
            dev = validate_device_id(topic[len(_PREFIX) : -len(_SUFFIX)].decode())
        except UnicodeDecodeError as e:
            raise ProtocolError(f"topic {topic[:200]!r} is not UTF-8") from e
        if len(self._ids) >= 100_000:  # bounded: device ids come from the network
            self._ids.clear()
        self._ids[topic] = dev
        return dev

    def rows(self, topic: bytes, payload: bytes) -> list[Row]:
        device_id = self._device(topic)
        rows = _fast_rows(device_id, payload)
        if rows is not None:
            self.fast += 1
            return rows
        self.slow += 1
        msg = decode(topic.decode(), payload)
        if not isinstance(msg, TelemetryBatch):  # decode() allows only telemetry here
            raise ProtocolError(f"expected a telemetry batch, got {type(msg).__name__}")
        rows = batch_rows(msg)
        for r in rows:
            # One out-of-range int would fail the whole database batch, other devices' too.
            if not all(v <= _MAX_INT for v in (r[3], r[4], r[5])):
                raise ProtocolError(f"telemetry of {device_id}: seq/calls/errors over {_MAX_INT}")
        return rows
