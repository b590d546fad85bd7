"""HTTP details the OpenAPI document promises (found by schemathesis): timestamps always
carry a timezone, and a 405 lists in ``Allow`` every method the path supports.

SQLite hands back naive datetimes even for values stored in UTC, so every timestamp the
API returns goes through :data:`UtcDatetime`. Starlette's 405 names only the methods of the
first route whose path matched, while FastAPI registers one route per method.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["UtcDatetime", "allowed_methods"]


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# A datetime the API returns: naive values (SQLite) are UTC, and say so.
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


def allowed_methods(app, path: str) -> list[str]:
    """Every method some route of ``app`` accepts on ``path`` (sorted; HEAD with GET)."""
    methods: set[str] = set()
    for route in app.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path) and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods)
