"""The download-ticket part of the device <-> fleet contract (design: fleet/_download_tickets.py).

A deploy command's ``artifact_url`` carries a short-lived ticket in its ``ticket`` query
parameter; a device renews it by POSTing the signed command to :data:`TICKET_RENEW_PATH`
on the same origin. Ticket values never belong in a log line or a stored reason.
"""

from __future__ import annotations

import re

__all__ = ["TICKET_RENEW_PATH", "redact_tickets"]

TICKET_RENEW_PATH = "/api/v1/artifacts/tickets"
_TICKET_RE = re.compile(r"(ticket=)[^&\s\"']+")


def redact_tickets(text: str) -> str:
    """``text`` with every ``ticket=<value>`` replaced by ``ticket=REDACTED``."""
    return _TICKET_RE.sub(r"\1REDACTED", text) if "ticket=" in text else text
