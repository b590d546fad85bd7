"""Download tickets: short-lived, bound to one device and one package, kept out of logs.

A deploy command carries the artifact URL with a ticket (``device``, ``exp``, ``ticket`` =
HMAC-SHA256 of device, package and expiry under the fleet's secret) valid for
``download_ticket_ttl_s`` (minutes). A URL leaks easily (access logs, proxies, an S3
redirect), so what it carries must die fast.

Renewal (a download resumed after a restart, a slow link, a command queued offline): the
agent POSTs its signed deploy command to ``/api/v1/artifacts/tickets`` and gets a fresh
URL. The command is the long-lived credential: signed by this fleet, naming the device,
valid until its own expiry, delivered only on the device's ACL-protected command topic, and
sent in a POST body (never in a URL). The fleet checks its signature and expiry, that the
device is known and not decommissioned and that the package exists; the download then
resumes with HTTP Range on the bytes already on disk.

``redact_access_log`` rewrites ``ticket=...`` in uvicorn's access log lines.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any
from urllib.parse import urlencode

from edgefleet.sdk.protocol import TICKET_RENEW_PATH, DeployCommand, redact_tickets
from pydantic import BaseModel

__all__ = [
    "TicketIn",
    "TicketOut",
    "authorize_download",
    "build_ticket_router",
    "check_ticket",
    "download_ticket",
    "redact_access_log",
    "renew_ticket_url",
    "ticket_url",
]

log = logging.getLogger(__name__)


def download_ticket(secret: bytes, device_id: str, name: str, version: str, exp: int) -> str:
    """Per-device download token bound to one package and an expiry (HMAC-SHA256)."""
    msg = f"{device_id}\n{name}\n{version}\n{exp}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def ticket_url(base_url: str, secret: bytes, device_id: str, name: str, version: str,
               ttl_s: float) -> tuple[str, int]:  # fmt: skip
    """(artifact URL with a fresh ticket, its expiry as a Unix time)."""
    exp = int(time.time() + ttl_s)
    query = urlencode(
        {"device": device_id, "exp": exp,
         "ticket": download_ticket(secret, device_id, name, version, exp)}
    )  # fmt: skip
    return f"{base_url}/api/v1/artifacts/{name}/{version}?{query}", exp


def check_ticket(secret: bytes, device_id: str, name: str, version: str, exp: int,
                 ticket: str, max_ttl_s: float) -> bool:  # fmt: skip
    """A valid, unexpired ticket whose expiry is not further out than the TTL allows (a
    long-lived ticket minted before the TTL was lowered stops working at once)."""
    now = time.time()
    if not now <= exp <= now + max_ttl_s + 60:  # 60 s: clock steps between replicas
        return False
    want = download_ticket(secret, device_id, name, version, exp)
    return hmac.compare_digest(want, ticket)


def authorize_download(
    service,
    name: str,
    version: str,
    *,
    device: str | None,
    exp: int | None,
    ticket: str | None,
    authorization: str | None,
) -> bool:
    """What every download route calls: a valid ticket, or a device token (``Bearer
    efd_...`` with ``device``), or an API token (any role; raises AuthError if invalid)."""
    s = service.ctx.settings
    if device and exp is not None and ticket:
        if check_ticket(service.rollouts.commands.ticket_secret, device, name, version, exp, ticket,
                        s.download_ticket_ttl_s):  # fmt: skip
            return True
    if authorization and authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
        if token.startswith("efd_"):
            return bool(device) and service.devices.check_token(device, token)
        service.tokens.authenticate(token)
        return True
    return False


def renew_ticket_url(service, command: dict) -> tuple[str, int]:
    """A fresh ticket URL for the signed deploy command ``command`` (see the module doc).
    The command is the credential here: one that does not parse is refused like a bad
    signature (401), not as a malformed request."""
    from edgefleet.sdk.protocol import CommandRejected, CommandVerifier
    from pydantic import ValidationError

    from ._errors import AuthError

    try:
        cmd = DeployCommand.model_validate(command)
    except ValidationError as e:
        raise AuthError(f"expected a signed deploy command: {e.error_count()} errors, "
                        f"first: {e.errors()[0]['msg']}") from e  # fmt: skip
    key = service.ctx.signing_key.public_key()
    try:
        # A fresh nonce store: the device already accepted this command once, on purpose.
        CommandVerifier(cmd.device_id, [key]).verify(cmd)
    except CommandRejected as e:
        raise AuthError(f"deploy command refused for a ticket: {e}") from e
    service.devices.get(cmd.device_id)  # 404 if unknown or decommissioned
    service.registry.get(cmd.package_name, cmd.package_version)  # 404 if it is gone
    s = service.ctx.settings
    return ticket_url(s.base_url, service.rollouts.commands.ticket_secret, cmd.device_id,
                      cmd.package_name, cmd.package_version, s.download_ticket_ttl_s)  # fmt: skip


class _RedactTickets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(a, str) and "ticket=" in a for a in record.args
        ):
            record.args = tuple(redact_tickets(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str) and "ticket=" in record.msg:
            record.msg = redact_tickets(record.msg)
        return True


def redact_access_log(logger_name: str = "uvicorn.access") -> None:
    """Install (once) the filter that hides ticket values in ``logger_name``'s lines."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _RedactTickets) for f in logger.filters):
        logger.addFilter(_RedactTickets())


class TicketIn(BaseModel):
    command: dict[str, Any]  # the signed DeployCommand, as the device received it


class TicketOut(BaseModel):
    url: str
    expires_at: int


def build_ticket_router(service):
    """``POST /api/v1/artifacts/tickets``: a fresh ticket URL for a signed deploy command."""
    from fastapi import APIRouter

    router = APIRouter(prefix="/api/v1")

    @router.post(
        TICKET_RENEW_PATH.removeprefix("/api/v1"),
        tags=["models"],
        response_model=TicketOut,
        responses={400: {"description": "body is not JSON"},
                   401: {"description": "command refused"}, 404: {"description": "gone"}},
    )  # fmt: skip
    def renew_ticket(body: TicketIn):
        """Renew a download ticket: the device sends the signed deploy command it holds and
        gets the artifact URL with a fresh short-lived ticket (resume with Range)."""
        url, exp = renew_ticket_url(service, body.command)
        return {"url": url, "expires_at": exp}

    return router
