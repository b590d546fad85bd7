"""Single files of a registered package, for per-device downloads.

A device fetches the signed manifest, picks the artifact(s) it will run, and downloads only
their files (plus golden data and package files) from here, each with HTTP Range and each
checked by the device against its sha256 in the manifest. The package archive stays the
registry's record; its files are unpacked once, on first request, into
``data_dir/package-files/<name>/<version>/`` (atomically: a reader never sees a half tree).
Only paths the manifest names are served. With an S3 store the package is not on this host:
these routes answer 404 and devices fall back to the whole package (redirected to S3).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from edgefleet.sdk import Manifest, extract_archive
from fastapi import APIRouter, Header, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from ._errors import NotFoundError

__all__ = ["PackageFiles", "add_file_routes"]

log = logging.getLogger(__name__)

Name = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class PackageFiles:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def tree(self, name: str, version: str, archive: Path | None) -> Path:
        """The unpacked package of (name, version), unpacking ``archive`` on first use."""
        if archive is None:
            raise NotFoundError(
                f"{name} {version}: single-file downloads need the local artifact store; "
                "download the whole package"
            )
        dest = self.root / name / version
        if dest.is_dir():
            return dest
        with self._lock:
            if not dest.is_dir():
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
                try:
                    extract_archive(archive, tmp / "pkg")
                    try:
                        (tmp / "pkg").rename(dest)
                    except OSError:
                        if not dest.is_dir():  # else another replica on this data_dir won
                            raise
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                log.info("unpacked %s %s for single-file downloads", name, version)
        return dest

    @staticmethod
    def served_paths(manifest: dict) -> set[str]:
        """manifest.json and every path the (registered, verified) manifest names."""
        m = Manifest.model_validate(manifest)
        paths = {"manifest.json", *(f.path for f in m.files)}
        if m.golden_inputs:
            paths.add(m.golden_inputs)
        for a in m.artifacts:
            paths.add(a.path)
            paths.update(f.path for f in a.files)
            if a.golden_outputs:
                paths.add(a.golden_outputs)
        return paths


def add_file_routes(
    r: APIRouter, service, authorize: Callable[[str, str, str | None, int | None, str | None,
                                                str | None], None]
) -> None:  # fmt: skip
    """``GET /artifacts/{name}/{version}/files/{path}`` (``manifest.json`` included), with
    the same authorisation as the whole-package download (``authorize`` raises)."""
    files = PackageFiles(Path(service.settings.data_dir) / "package-files")

    @r.get(
        "/artifacts/{name}/{version}/files/{path:path}",
        tags=["models"],
        response_class=FileResponse,
    )
    def package_file(
        name: Name,
        version: Name,
        path: str,
        device: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")] = None,
        exp: Annotated[int | None, Query(ge=0, le=2**40)] = None,
        ticket: Annotated[str | None, Query(max_length=128)] = None,
        authorization: Annotated[str | None, Header()] = None,
    ):
        """One file of a package (HTTP Range supported): ``manifest.json`` or a path the
        manifest lists. Same tickets and tokens as the whole-package download."""
        mv = service.registry.get(name, version)
        authorize(name, version, device, exp, ticket, authorization)
        if path not in files.served_paths(mv.manifest):
            raise NotFoundError(f"{name} {version} has no file {path!r}")
        root = files.tree(name, version, service.registry.store.local_path(mv.path))
        target = root / path
        if not target.is_file():
            raise NotFoundError(f"{name} {version}: {path} is missing from the stored package")
        return FileResponse(target, media_type="application/octet-stream")
