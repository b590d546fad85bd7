"""Renewing a download ticket (the fleet's side and the design: fleet/_download_tickets.py).

A deploy command's artifact URL carries a ticket that lives minutes. When the fleet
refuses it (401/403: expired, e.g. a download resumed after a restart or a command queued
while offline), the agent POSTs the signed deploy command it holds to the fleet's
``/api/v1/artifacts/tickets`` and resumes the download (HTTP Range) with the fresh URL.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

from edgefleet.sdk.protocol import TICKET_RENEW_PATH, DeployCommand

__all__ = ["has_ticket", "renew_ticket"]

log = logging.getLogger(__name__)


def has_ticket(url: str) -> bool:
    return "ticket" in parse_qs(urlsplit(url).query)


def renew_ticket(cmd: DeployCommand, timeout_s: float) -> str:
    """A fresh artifact URL for ``cmd`` from the fleet that served its URL."""
    from ._download import DownloadError, _http_client

    u = urlsplit(cmd.artifact_url)
    endpoint = f"{u.scheme}://{u.netloc}{TICKET_RENEW_PATH}"
    import httpx

    try:
        r = _http_client().post(
            endpoint, json={"command": cmd.model_dump(mode="json")}, timeout=timeout_s
        )
    except httpx.TransportError as e:
        raise DownloadError(f"POST {endpoint}: {e}") from e
    if r.status_code != 200:
        raise DownloadError(f"POST {endpoint}: HTTP {r.status_code}: {r.text[:300]}")
    url = r.json().get("url")
    if not isinstance(url, str) or urlsplit(url).netloc != u.netloc:
        raise DownloadError(f"POST {endpoint}: expected a URL on {u.netloc}, got {url!r}")
    log.info("download ticket renewed for %s %s", cmd.package_name, cmd.package_version)
    return url
