"""``python -m edgefleet.sdk.protocol [--write]``: print or rewrite the checked-in schema."""

from __future__ import annotations

import sys

from ._schema import schema_text, write_schema

if "--write" in sys.argv[1:]:
    print(f"wrote {write_schema()}")
else:
    sys.stdout.write(schema_text())
