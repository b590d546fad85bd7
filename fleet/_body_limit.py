"""A declared ``Content-Length`` over the limit is refused with a JSON 413 that names it.

Starlette's ``max_body_size`` (set on the app and on the upload route) already limits bodies
while they stream in; for a declared length it answers a bare ``Content Too Large`` in plain
text. This outermost ASGI layer answers that case first, before any byte of the body is
read, in the API's error format with the limit and the declared size.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

__all__ = ["DeclaredLengthLimit"]

log = logging.getLogger(__name__)


class DeclaredLengthLimit:
    """ASGI middleware: ``limit_for(method, path)`` = the byte limit of that request."""

    def __init__(self, app, limit_for: Callable[[str, str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            declared = dict(scope.get("headers") or []).get(b"content-length", b"")
            limit = self.limit_for(scope["method"], scope["path"])
            if declared.isdigit() and int(declared) > limit:
                detail = (
                    f"request body of {int(declared)} bytes is over the {limit} byte limit"
                    f" of {scope['path']}"
                )
                body = json.dumps({"detail": detail}).encode()
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ]
                await send({"type": "http.response.start", "status": 413, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
