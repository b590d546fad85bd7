"""JSON Schema of the package manifest, exported to ``sdk/manifest.schema.json``.

Regenerate with ``python -m edgefleet.sdk._manifest_schema``; a test fails when the file is stale.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._manifest import Manifest

__all__ = ["SCHEMA_PATH", "manifest_schema", "render_manifest_schema"]

SCHEMA_PATH = Path(__file__).parent / "manifest.schema.json"


def manifest_schema() -> dict:
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://edgefleet.dev/schemas/manifest-v1.json"
    return schema


def render_manifest_schema() -> str:
    return json.dumps(manifest_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(render_manifest_schema())
    print(f"wrote {SCHEMA_PATH}")
