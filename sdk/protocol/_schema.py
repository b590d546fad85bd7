"""JSON Schema of every wire message, checked in as ``schema.json`` next to this module.

Regenerate with ``python -m edgefleet.sdk.protocol --write``; a test fails when stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from ._message_base import PROTOCOL_SCHEMA_VERSION
from ._messages import Message

__all__ = ["SCHEMA_PATH", "message_schema", "schema_text", "write_schema"]

SCHEMA_PATH = Path(__file__).with_name("schema.json")


def message_schema() -> dict[str, Any]:
    schema = TypeAdapter(Message).json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"edgefleet wire protocol v{PROTOCOL_SCHEMA_VERSION}"
    return schema


def schema_text() -> str:
    return json.dumps(message_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    path.write_text(schema_text())
    return path
