"""Where package files live: a local directory (default) or an S3-compatible bucket.

With S3 the fleet never serves package bytes itself: after checking a device's download
ticket it redirects to a short-lived presigned URL, so downloads scale with the object store
(HTTP Range and resumption are the store's). The device still checks sha256 and signature.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from ._errors import StorageError

__all__ = ["ArtifactStore", "LocalStore", "S3Store", "StorageError", "make_store"]

log = logging.getLogger(__name__)


class ArtifactStore(Protocol):
    def put(self, key: str, src: Path) -> str:
        """Store ``src`` under ``key``; returns the location recorded in the registry."""
        ...

    def local_path(self, location: str) -> Path | None:
        """A file the fleet can serve itself, or None if devices must be redirected."""
        ...

    def presigned_url(self, location: str, filename: str) -> str:
        """A time-limited URL a device can GET (with Range) without other credentials."""
        ...

    def close(self) -> None: ...


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, key: str, src: Path) -> str:
        dest = self.root / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".upload-")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)  # atomic: a reader never sees half a package
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return str(dest)

    def local_path(self, location: str) -> Path | None:
        return Path(location)

    def presigned_url(self, location: str, filename: str) -> str:
        raise StorageError("a local artifact store serves files itself")

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class S3Options:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None  # MinIO, Ceph, moto...; None = AWS
    region: str | None = None
    url_ttl_s: int = 900


class S3Store:
    """boto3 client; credentials come from the usual AWS environment/config chain."""

    def __init__(self, opts: S3Options) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as e:
            raise StorageError(
                "an s3:// artifact store needs boto3: pip install 'edgefleet[fleet,s3]'"
            ) from e
        self.opts = opts
        self.client = boto3.client(
            "s3",
            endpoint_url=opts.endpoint_url,
            region_name=opts.region,
            config=Config(signature_version="s3v4", retries={"max_attempts": 5}),
        )

    def _key(self, key: str) -> str:
        return f"{self.opts.prefix.strip('/')}/{key}".lstrip("/")

    def put(self, key: str, src: Path) -> str:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(key)
        try:
            # upload_file switches to a multipart upload for large packages by itself.
            self.client.upload_file(
                str(src), self.opts.bucket, full, ExtraArgs={"ContentType": "application/zip"}
            )
        except (Boto3Error, BotoCoreError, ClientError) as e:
            raise StorageError(f"upload to s3://{self.opts.bucket}/{full} failed: {e}") from e
        log.info("stored s3://%s/%s", self.opts.bucket, full)
        return f"s3://{self.opts.bucket}/{full}"

    def local_path(self, location: str) -> Path | None:
        return None

    def presigned_url(self, location: str, filename: str) -> str:
        bucket, _, key = location.removeprefix("s3://").partition("/")
        return self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": bucket,
                "Key": key,
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
            },
            ExpiresIn=self.opts.url_ttl_s,
        )

    def close(self) -> None:
        self.client.close()  # its connection pool


def make_store(url: str, data_dir: Path, *, endpoint_url: str = "", region: str = "",
               url_ttl_s: int = 900) -> ArtifactStore:  # fmt: skip
    """``""`` -> ``data_dir/packages``; ``s3://bucket/prefix`` -> S3; a path -> that dir."""
    if not url:
        return LocalStore(data_dir / "packages")
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise StorageError(f"artifact store {url!r}: expected s3://BUCKET[/PREFIX]")
        return S3Store(
            S3Options(
                bucket=parts.netloc,
                prefix=parts.path,
                endpoint_url=endpoint_url or None,
                region=region or None,
                url_ttl_s=url_ttl_s,
            )
        )
    if parts.scheme in ("", "file"):
        return LocalStore(Path(parts.path))
    raise StorageError(f"artifact store {url!r}: expected a directory or s3://BUCKET[/PREFIX]")
