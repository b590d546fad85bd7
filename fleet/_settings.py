"""The fleet's one Settings class (env prefix ``EDGEFLEET_FLEET_``)."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["FleetSettings"]

log = logging.getLogger(__name__)


class FleetSettings(BaseSettings):
    """Everything the fleet service reads from its environment.

    ``broker_url`` empty means: start the embedded amqtt broker (zero-setup demo).
    """

    model_config = SettingsConfigDict(env_prefix="EDGEFLEET_FLEET_", frozen=True)

    data_dir: Path = Path("fleet-data")
    database_url: str = ""  # empty -> sqlite file inside data_dir
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    public_url: str = ""  # how devices reach the HTTP API; empty -> http://host:port
    broker_url: str = ""  # mqtt://user:pass@host:port ; empty -> embedded amqtt
    embedded_broker_port: int = Field(default=1883, ge=0, le=65535)
    mqtt_client_id: str = "edgefleet-fleet"  # also the fleet's MQTT user in generated ACLs
    # Empty (default): a clean MQTT session with a unique client id per process, so a replica
    # that stops for good leaves no dead session in the shared-subscription group. Set a
    # stable id per replica to get a persistent session (client id "<mqtt_client_id>-<id>").
    replica_id: str = ""
    mqtt_username: str = ""
    mqtt_password: str = ""
    # mqtts:// broker URLs: the CA that signed the broker's certificate (None: the system
    # store); a client certificate and key when the broker asks for one.
    mqtt_tls_ca: Path | None = None
    mqtt_tls_cert: Path | None = None
    mqtt_tls_key: Path | None = None
    share_group: str = "fleet"
    # Package files: "" -> data_dir/packages; "s3://bucket/prefix" -> an S3-compatible store
    # (credentials from the AWS environment; devices get presigned URLs); or a directory.
    artifact_store: str = ""
    s3_endpoint_url: str = ""  # MinIO/Ceph/... endpoint; empty = AWS
    s3_region: str = ""
    s3_url_ttl_s: int = Field(default=900, ge=60, le=7 * 24 * 3600)
    signing_key: Path | None = None  # Ed25519 key for commands; generated in data_dir if None
    trusted_package_keys: list[Path] = Field(default_factory=list)
    allow_unverified_packages: bool = False
    command_ttl_s: float = Field(default=24 * 3600, gt=0)
    # A deploy command's download URL works this long; the agent renews it
    # (fleet/_download_tickets.py).
    download_ticket_ttl_s: float = Field(default=600, ge=10, le=24 * 3600)
    tick_interval_s: float = Field(default=0.5, gt=0)
    telemetry_batch_size: int = Field(default=2000, ge=1)
    telemetry_flush_interval_s: float = Field(default=0.2, gt=0)
    max_payload_bytes: int = Field(default=256 * 1024, ge=1024)
    sqlite_busy_timeout_s: float = Field(default=10.0, ge=0)
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    bootstrap_admin_token: str = ""  # set -> ensured on start (demo, tests)
    # Set -> GET /metrics needs "Authorization: Bearer <metrics_token>" (Prometheus'
    # bearer_token / authorization scrape settings); empty -> /metrics is open.
    metrics_token: str = ""
    # A client (IP) with this many failed authentications within the window gets 429 with
    # Retry-After for auth_lockout_s (fleet/_ratelimit.py).
    auth_max_failures: int = Field(default=20, ge=1)
    auth_failure_window_s: float = Field(default=60.0, gt=0)
    auth_lockout_s: float = Field(default=60.0, gt=0)
    mqtt_enabled: bool = True
    # Scale-out: replicas share ingestion (shared subscriptions); of those with run_engine,
    # the holder of the "engine" lease in the database runs the rollout engine and the others
    # take over within engine_lease_s if it stops. False: this replica never runs it.
    run_engine: bool = True
    engine_lease_s: float = Field(default=10.0, ge=1.0, le=600.0)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'fleet.db').resolve()}"

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"
