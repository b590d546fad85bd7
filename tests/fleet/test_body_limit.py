"""Uploads are refused with 413 while they stream in, before the whole file is on disk."""

from __future__ import annotations

import asyncio

from edgefleet.fleet import FleetService, FleetSettings, create_app

ADMIN = "eft_00000000000000cd_admin"
LIMIT = 1024 * 1024
CHUNK = 64 * 1024


def _upload(app, total: int, *, declare_length: bool) -> tuple[int, bytes, int]:
    """POST a multipart body of ``total`` bytes in chunks through the real ASGI app; returns
    (status, body, bytes the app pulled from the client)."""
    boundary = b"b0undary"
    head = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="p.efpkg"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    tail = b"\r\n--" + boundary + b"--\r\n"
    size = len(head) + total + len(tail)
    headers = [
        (b"content-type", b"multipart/form-data; boundary=" + boundary),
        (b"authorization", f"Bearer {ADMIN}".encode()),
        (b"host", b"test"),
    ]
    if declare_length:
        headers.append((b"content-length", str(size).encode()))
    state = {"sent": 0, "status": None, "body": b""}

    async def receive():
        if state["sent"] == 0:
            chunk = head
        elif state["sent"] < len(head) + total:
            chunk = b"x" * min(CHUNK, len(head) + total - state["sent"])
        else:
            chunk = tail
        state["sent"] += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": chunk is not tail}

    async def send(message):
        if message["type"] == "http.response.start":
            state["status"] = message["status"]
        elif message["type"] == "http.response.body":
            state["body"] += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/models",
        "raw_path": b"/api/v1/models",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("test", 80),
    }
    asyncio.run(app(scope, receive, send))
    return state["status"], state["body"], state["sent"]


def test_upload_over_the_limit_is_refused_while_streaming(tmp_path):
    s = FleetService(
        FleetSettings(
            data_dir=tmp_path,
            mqtt_enabled=False,
            max_upload_bytes=LIMIT,
            bootstrap_admin_token=ADMIN,
        )
    )
    try:
        app = create_app(s)
        # Chunked (no Content-Length): refused after at most one chunk past the limit.
        status, body, pulled = _upload(app, 64 * 1024 * 1024, declare_length=False)
        assert status == 413 and b"byte limit" in body
        assert pulled <= LIMIT + 2 * CHUNK, f"read {pulled} bytes of a 64 MiB upload"
        # A declared length over the limit: refused before a byte of the body is read.
        status, body, pulled = _upload(app, 64 * 1024 * 1024, declare_length=True)
        assert status == 413 and pulled == 0
        # Under the limit the request reaches the endpoint (which says why it is no package).
        status, body, _ = _upload(app, 10_000, declare_length=False)
        assert status not in (413, 500), body
    finally:
        s.ctx.engine.dispose()
