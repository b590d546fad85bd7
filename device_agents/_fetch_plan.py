"""Per-device download: fetch the signed manifest, choose the artifact(s) this device will
run, download only their files (plus golden data and package files), each resumable and
checked against its sha256 in the manifest, and assemble a partial package.

The choice is :func:`edgefleet.sdk.select_artifacts` with the agent's backend and profile:
the same code path ``load`` runs when the package is smoke-tested and served, so a device
never fetches one artifact and then loads another. Files come from the fleet's
``<package url>/files/<path>`` route with the deploy command's own query (ticket); a fleet
that does not serve single files answers 404 for the manifest and the caller falls back
to the whole ``.efpkg`` (old fleets, S3 stores).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from edgefleet.sdk import PackageError, SignatureError
from edgefleet.sdk.protocol import redact_tickets as redact

from ._download import DownloadError, DownloadRefused, DownloadSpec, _http_client, download

__all__ = ["FetchOptions", "FetchResult", "fetch_for_device", "file_url"]

log = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class FetchOptions:
    policy: object  # edgefleet.sdk.TrustPolicy
    backend: str | None = None
    profile: str | None = None
    token: str | None = None
    timeout_s: float = 30.0
    retries: int = 5
    ca_file: str | None = None  # HTTPS: trust only this CA bundle (None: the system store)
    # A fresh package URL (new ticket) when the fleet refuses the one in use.
    renew: Callable[[], str] | None = None


@dataclass(frozen=True)
class FetchResult:
    root: Path
    artifacts: tuple[str, ...]
    files: int
    bytes_planned: int  # manifest + every file fetched
    artifact_bytes: int  # the files of the chosen artifact(s) alone


def file_url(package_url: str, rel: str) -> str:
    """``<package url>/files/<rel>``, keeping the package URL's query (the ticket)."""
    u = urlsplit(package_url)
    return urlunsplit(u._replace(path=f"{u.path.rstrip('/')}/files/{quote(rel)}"))


def _get_manifest(url: str, opts: FetchOptions) -> bytes | None:
    headers = {"Accept-Encoding": "identity"}
    if opts.token:
        headers["Authorization"] = f"Bearer {opts.token}"
    import httpx

    try:
        with _http_client(opts.ca_file).stream(
            "GET", url, headers=headers, timeout=opts.timeout_s, follow_redirects=True
        ) as r:
            if r.status_code == 404:
                return None
            if r.status_code in (401, 403):
                raise DownloadRefused(f"GET {redact(url)}: HTTP {r.status_code}")
            if r.status_code != 200:
                raise DownloadError(f"GET {redact(url)}: HTTP {r.status_code}")
            data = b""
            for block in r.iter_raw():
                data += block
                if len(data) > MAX_MANIFEST_BYTES:
                    raise DownloadError(f"GET {url}: manifest over {MAX_MANIFEST_BYTES} bytes")
            return data
    except httpx.HTTPError as e:
        raise DownloadError(f"GET {redact(url)} failed: {redact(str(e))}") from e


def fetch_for_device(
    cmd,
    dest: Path,
    opts: FetchOptions,
    *,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    canceled: Callable[[], bool] = lambda: False,
) -> FetchResult | None:
    """Assemble the partial package for ``cmd`` (a DeployCommand) in ``dest``; None when
    the server offers no single files (the caller downloads the whole package).

    Raises SignatureError (manifest not trusted, or not the one the command names),
    BackendUnavailableError (nothing here can run any artifact), PackageError, DownloadError.
    """
    from edgefleet.sdk import files_for, select_artifacts, sha256_file, verify_manifest
    from edgefleet.sdk._package import read_manifest
    from edgefleet.sdk._partial import write_partial

    base = cmd.artifact_url
    try:
        raw = _get_manifest(file_url(base, "manifest.json"), opts)
    except DownloadRefused:
        if opts.renew is None:
            raise
        base = opts.renew()  # the ticket expired (a restart, a command queued offline)
        raw = _get_manifest(file_url(base, "manifest.json"), opts)
    if raw is None:
        return None
    manifest = read_manifest(raw, cmd.artifact_url)
    verify_manifest(manifest, opts.policy)
    sig = manifest.signature
    if sig is None or (sig.key_id, sig.value) != (
        cmd.manifest_signature.key_id,
        cmd.manifest_signature.value,
    ):
        raise SignatureError("the served manifest's signature differs from the command's")
    if (manifest.name, manifest.version) != (cmd.package_name, cmd.package_version):
        raise SignatureError(
            f"served manifest is {manifest.name} {manifest.version}, the command named "
            f"{cmd.package_name} {cmd.package_version}"
        )
    chosen = select_artifacts(manifest, backend=opts.backend, profile=opts.profile)
    needed = files_for(manifest, chosen)
    unhashed = [f.path for f in needed if f.sha256 is None]
    if unhashed:
        # A package built before golden files were hashed: nothing to check them against
        # one by one, so take the whole package (checked by the command's sha256).
        log.info("files %s have no sha256 in the manifest; whole-package download", unhashed)
        return None
    total = len(raw) + sum(f.size for f in needed)
    mine = {p for a in chosen for p in (a.path, *(f.path for f in a.files))}
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "manifest.json").write_bytes(raw)
    done = len(raw)
    on_progress(done, total)
    for f in needed:
        target = dest / f.path
        if not target.resolve().is_relative_to(dest.resolve()):
            raise PackageError(f"manifest path {f.path!r} escapes the package")
        if target.is_file() and target.stat().st_size == f.size and sha256_file(target) == f.sha256:
            done += f.size  # fetched before a restart
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        start = done
        spec = DownloadSpec(
            url=file_url(base, f.path), size=f.size, token=opts.token,
            timeout_s=opts.timeout_s, retries=opts.retries, ca_file=opts.ca_file,
            renew=(lambda p=f.path: file_url(opts.renew(), p)) if opts.renew else None,
        )  # fmt: skip
        download(
            spec,
            target,
            on_bytes=lambda n, s=start: on_progress(s + n, total),
            canceled=canceled,
        )
        digest = sha256_file(target)
        if digest != f.sha256:
            target.unlink(missing_ok=True)
            raise PackageError(
                f"{f.path} does not match the signed manifest: expected sha256 {f.sha256}, "
                f"got {digest}"
            )
        done += f.size
    write_partial(dest, chosen)
    names = tuple(a.name for a in chosen)
    log.info(
        "fetched %s %s artifact(s) %s: %d files, %d bytes (artifact %d bytes)",
        manifest.name, manifest.version, list(names), len(needed), total,
        sum(f.size for f in needed if f.path in mine),
    )  # fmt: skip
    return FetchResult(
        dest, names, len(needed), total, sum(f.size for f in needed if f.path in mine)
    )
