"""SQLAlchemy 2 schema of the fleet store and engine creation (SQLite default, PostgreSQL).

The schema is created and upgraded by the Alembic migrations in ``migrations/``; these
classes must match them (a test compares ``metadata`` with the migrated database).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

__all__ = [
    "Base",
    "ApiToken",
    "ModelVersion",
    "Device",
    "Rollout",
    "RolloutDevice",
    "RolloutEvent",
    "Telemetry",
    "Lease",
    "AuditLog",
    "make_engine",
    "make_sessionmaker",
    "READ_ONLY",
    "utcnow",
]

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, datetime: DateTime(True)}


class Lease(Base):
    """A named lease held by one replica until ``expires_at`` (unix seconds) unless renewed."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[float] = mapped_column(Float)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    file_sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    signed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    profile: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen: Mapped[datetime | None] = mapped_column(nullable=True)
    agent_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    active_slot: Mapped[str | None] = mapped_column(String(1), nullable=True)
    slot_a: Mapped[str | None] = mapped_column(String(140), nullable=True)
    slot_b: Mapped[str | None] = mapped_column(String(140), nullable=True)
    inventory: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    token_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    mqtt_password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    decommissioned: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Given through the API (MaintenanceWindow dicts); sent with each deploy command.
    maintenance_windows: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)

    @property
    def active_model(self) -> str | None:
        return {"A": self.slot_a, "B": self.slot_b}.get(self.active_slot or "")


class Rollout(Base):
    __tablename__ = "rollouts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    status: Mapped[str] = mapped_column(String(16), default="DRAFT", index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    target: Mapped[dict[str, Any]] = mapped_column(JSON)
    waves: Mapped[list[list[str]]] = mapped_column(JSON, default=list)  # device ids per wave
    current_wave: Mapped[int] = mapped_column(Integer, default=0)
    wave_started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    soak_started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    override_wave: Mapped[int] = mapped_column(Integer, default=-1)
    gates: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    start_at: Mapped[datetime | None] = mapped_column(nullable=True)  # scheduled start


class RolloutDevice(Base):
    __tablename__ = "rollout_devices"
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    wave: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="PENDING")
    previous_model: Mapped[str | None] = mapped_column(String(140), nullable=True)
    command_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[float] = mapped_column(Float, default=0.0)


class RolloutEvent(Base):
    __tablename__ = "rollout_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64), default="engine")


class AuditLog(Base):
    """Who (API token id and role) did what to which rollout, model, device or token."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_target", "target_type", "target_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[str] = mapped_column(String(32))
    actor_role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(140))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Telemetry(Base):
    __tablename__ = "telemetry"
    __table_args__ = (
        Index("ix_telemetry_model_ts", "model", "ts"),
        Index("ix_telemetry_device_ts", "device_id", "ts"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(140))
    ts: Mapped[float] = mapped_column(Float)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    p50_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    p95_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    p99_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    cache_hit_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    # generative models only (migration 0003)
    ttft_p95_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    decode_tps: Mapped[float | None] = mapped_column(Float, nullable=True)


def _sqlite_pragmas(busy_timeout_s: float):
    def connect(dbapi_conn, _record) -> None:
        # WAL lets the API read while the telemetry writer commits; NORMAL sync is safe in WAL.
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cur.close()

    return connect


READ_ONLY = {"edgefleet_read_only": True}


def _sqlite_begin(conn) -> None:
    # A deferred transaction that reads, then writes after another connection committed, fails
    # at once with "database is locked" (WAL snapshot conflict; the busy timeout does not
    # apply). IMMEDIATE takes the write lock up front, so writers queue on busy_timeout.
    # Read-only sessions (READ_ONLY execution option) stay deferred: WAL readers never wait.
    read_only = conn.get_execution_options().get("edgefleet_read_only", False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_engine(url: str, *, busy_timeout_s: float = 10.0) -> Engine:
    """``busy_timeout_s``: how long a SQLite writer queues for the write lock before
    "database is locked" (the API then answers 503 with Retry-After)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": busy_timeout_s}
        )
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_s))
        event.listen(engine, "begin", _sqlite_begin)
    else:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        engine = create_engine(url, pool_pre_ping=True)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
