"""Model registry: upload a package (signature and hashes checked), list versions."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from edgefleet.sdk import PackageError, TrustPolicy, load_public_key, open_package
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ._context import Context
from ._db import ModelVersion
from ._errors import BadRequestError, ConflictError, found
from ._storage import make_store

__all__ = ["Registry", "find_version", "model_ref"]

log = logging.getLogger(__name__)


def model_ref(name: str, version: str) -> str:
    return f"{name}@{version}"


def find_version(db: Session, name: str, version: str) -> ModelVersion:
    """The registered version, or NotFoundError naming it."""
    stmt = select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
    return found(db.scalar(stmt), f"model {name} version {version} is not registered")


class Registry:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        s = ctx.settings
        keys = [load_public_key(p) for p in s.trusted_package_keys]
        if keys:
            self.policy = TrustPolicy.device(*keys)
        elif s.allow_unverified_packages:
            self.policy = TrustPolicy.workstation()
        else:
            self.policy = None  # uploads refused until trusted keys are configured
        self.store = make_store(
            s.artifact_store, s.data_dir, endpoint_url=s.s3_endpoint_url, region=s.s3_region,
            url_ttl_s=s.s3_url_ttl_s,
        )  # fmt: skip

    def upload(self, src: Path) -> ModelVersion:
        """Verify ``src`` (a .efpkg file) and store it; duplicates are 409."""
        if self.policy is None:
            raise BadRequestError(
                "no trusted package keys configured (EDGEFLEET_FLEET_TRUSTED_PACKAGE_KEYS); "
                "refusing uploads whose signature cannot be checked"
            )
        try:
            with open_package(src, self.policy) as pkg:
                manifest = pkg.manifest
                digest = pkg.digest
                signed_by = pkg.signed_by
        except PackageError as e:
            raise BadRequestError(f"package rejected: {e}") from e
        h = hashlib.sha256()
        with open(src, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        with self.ctx.Session() as db:
            exists = db.scalar(
                select(ModelVersion).where(
                    ModelVersion.name == manifest.name, ModelVersion.version == manifest.version
                )
            )
            if exists is not None:
                raise ConflictError(
                    f"{manifest.name} {manifest.version} is already registered "
                    f"(digest {exists.digest[:12]}); bump the version"
                )
            location = self.store.put(f"{manifest.name}/{manifest.version}.efpkg", src)
            mv = ModelVersion(
                name=manifest.name,
                version=manifest.version,
                digest=digest,
                file_sha256=h.hexdigest(),
                size=src.stat().st_size,
                path=location,
                manifest=manifest.model_dump(mode="json"),
                signed_by=signed_by,
            )
            db.add(mv)
            try:
                db.commit()
            except IntegrityError as e:  # a concurrent upload of the same version won
                db.rollback()
                raise ConflictError(f"{manifest.name} {manifest.version} already exists") from e
        self.ctx.metrics.inc("edgefleet_fleet_packages_uploaded_total")
        log.info("registered %s %s (%s)", manifest.name, manifest.version, digest[:12])
        return mv

    def get(self, name: str, version: str) -> ModelVersion:
        with self.ctx.ReadSession() as db:
            return find_version(db, name, version)

    def by_id(self, mv_id: int) -> ModelVersion:
        with self.ctx.ReadSession() as db:
            return found(db.get(ModelVersion, mv_id), f"model version id {mv_id} does not exist")

    def list(self, name: str | None = None) -> list[ModelVersion]:
        stmt = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.id)
        if name:
            stmt = stmt.where(ModelVersion.name == name)
        with self.ctx.ReadSession() as db:
            return list(db.scalars(stmt))
