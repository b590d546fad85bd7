"""Resumable artifact download over HTTP Range (httpx), authenticated by the device token.

Bytes go to ``<dest>.part``; an interrupted download (network error or a killed agent)
continues from the bytes already on disk instead of starting over.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgefleet.sdk import EdgefleetError
from edgefleet.sdk.protocol import redact_tickets as redact

from . import _fsutil

__all__ = ["DownloadError", "DownloadCanceled", "DownloadSpec", "download"]

log = logging.getLogger(__name__)


class DownloadError(EdgefleetError):
    """The artifact could not be downloaded (HTTP error, size mismatch, retries exhausted)."""


class DownloadRefused(DownloadError):
    """The server refused the credentials (HTTP 401/403): e.g. an expired ticket."""


class DownloadCanceled(EdgefleetError):
    """The deployment was canceled while downloading."""


@dataclass(frozen=True)
class DownloadSpec:
    url: str
    size: int
    token: str | None = None
    timeout_s: float = 30.0
    retries: int = 5
    ca_file: str | None = None  # HTTPS: trust only this CA bundle (None: the system store)
    # A fresh URL when the server refuses the ticket in ``url`` (device_agents/_ticket_renewal.py).
    renew: Callable[[], str] | None = None


_clients: dict[str | None, object] = {}
_client_lock = threading.Lock()


def _http_client(ca_file: str | None = None):
    """One pooled client per process and CA. Building an SSL context per download was half
    of the simulator's CPU with 1,000 agents in one process (py-spy); httpx.Client is
    thread-safe. HTTPS is always verified: against ``ca_file`` when set (a fleet behind a
    reverse proxy with its own CA), else the system store."""
    with _client_lock:
        client = _clients.get(ca_file)
        if client is None:
            import ssl

            import httpx

            verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
            client = httpx.Client(
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                verify=verify,
            )
            atexit.register(client.close)  # no unclosed keep-alive socket at exit
            _clients[ca_file] = client
        return client


def _fetch(
    spec: DownloadSpec,
    part: Path,
    on_bytes: Callable[[int], None],
    canceled: Callable[[], bool],
) -> None:
    import httpx

    have = part.stat().st_size if part.exists() else 0
    if have > spec.size:
        part.unlink()
        have = 0
    if have == spec.size:
        return
    # identity: Range offsets must count the bytes on disk, not compressed ones.
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    if spec.token:
        headers["Authorization"] = f"Bearer {spec.token}"
    with _http_client(spec.ca_file).stream(
        "GET", spec.url, headers=headers, timeout=spec.timeout_s, follow_redirects=True
    ) as r:
        if r.status_code in (401, 403):
            raise DownloadRefused(f"GET {redact(spec.url)}: HTTP {r.status_code}")
        if r.status_code in (404, 410):
            raise DownloadError(f"GET {redact(spec.url)}: HTTP {r.status_code} (not retried)")
        if r.status_code not in (200, 206):
            raise httpx.HTTPStatusError(f"HTTP {r.status_code}", request=r.request, response=r)
        mode = "ab"
        if r.status_code == 200 and have:
            log.warning("server ignored the Range request; restarting download of %s",
                        redact(spec.url))  # fmt: skip
            mode, have = "wb", 0
        with open(part, mode) as f:
            # iter_raw yields what arrived; a buffered iterator would lose the tail on a cut.
            for block in r.iter_raw():
                if canceled():
                    raise DownloadCanceled("download canceled")
                if have + len(block) > spec.size:
                    raise DownloadError(
                        f"GET {redact(spec.url)}: server sent more than the expected "
                        f"{spec.size} bytes"
                    )
                f.write(block)
                f.flush()  # so what is on disk is what a resume (even after kill -9) counts
                have += len(block)
                on_bytes(have)
            f.flush()
            if _fsutil.durable():
                os.fsync(f.fileno())
    if have != spec.size:
        raise httpx.TransportError(f"connection ended at {have} of {spec.size} bytes")


def download(
    spec: DownloadSpec,
    dest: Path,
    *,
    on_bytes: Callable[[int], None] = lambda n: None,
    canceled: Callable[[], bool] = lambda: False,
) -> Path:
    """Download ``spec.url`` to ``dest`` (resuming ``dest.part``); retry with backoff."""
    import httpx
    from edgefleet.sdk import Backoff

    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    backoff = Backoff(0.2, 5.0)
    renewed = False  # the URL in use came from a renewal and was not refused since
    attempt = 0
    while True:
        try:
            _fetch(spec, part, on_bytes, canceled)
            os.replace(part, dest)
            return dest
        except DownloadRefused:
            if spec.renew is None or renewed:
                raise
            spec, renewed = dataclasses.replace(spec, url=spec.renew()), True
            continue  # a renewal is not a failed attempt: resume at once
        except (httpx.TransportError, httpx.HTTPStatusError, OSError) as e:
            renewed = False
            if attempt == spec.retries:
                raise DownloadError(
                    f"GET {redact(spec.url)} failed after {attempt + 1} attempts: {e}"
                ) from e
            attempt += 1
            have = part.stat().st_size if part.exists() else 0
            log.warning("download interrupted at %d bytes (%s); resuming", have, e)
            time.sleep(backoff.next())
