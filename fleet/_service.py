"""FleetService: wires store, registry, devices, rollouts, telemetry and MQTT together."""

from __future__ import annotations

import logging
import secrets
import socket

from ._broker import EmbeddedBroker
from ._command_sender import CommandSender
from ._context import Context, load_or_create_signing_key
from ._db import READ_ONLY, make_engine, make_sessionmaker
from ._devices import Devices
from ._lease import LeaseKeeper
from ._migrate import upgrade_database
from ._mqtt import MqttBridge
from ._prometheus import Metrics, register_fleet_metrics
from ._registry import Registry
from ._report_loop import ReportLoop
from ._rollout_ticker import RolloutTicker
from ._rollouts import Rollouts
from ._settings import FleetSettings
from ._telemetry import TelemetryWriter
from ._tokens import ApiTokens

__all__ = ["FleetService"]

log = logging.getLogger(__name__)


class FleetService:
    """The running fleet (minus HTTP). ``start()`` migrates the database, starts the
    telemetry writer, the MQTT bridge (and the embedded broker if no URL is set) and the
    rollout ticker; ``stop()`` undoes it in reverse order."""

    def __init__(self, settings: FleetSettings | None = None) -> None:
        self.settings = s = settings or FleetSettings()
        # Names this process among replicas (MQTT client id suffix, engine lease holder).
        self.instance = s.replica_id or secrets.token_hex(4)
        s.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(s.db_url, busy_timeout_s=s.sqlite_busy_timeout_s)
        upgrade_database(engine)
        self.metrics = Metrics()
        self.ctx = Context(
            settings=s,
            engine=engine,
            Session=make_sessionmaker(engine),
            ReadSession=make_sessionmaker(engine.execution_options(**READ_ONLY)),
            metrics=self.metrics,
            signing_key=load_or_create_signing_key(s),
        )
        secret_file = s.data_dir / "keys" / "download.secret"
        if not secret_file.exists():
            secret_file.parent.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(secrets.token_hex(32))
            secret_file.chmod(0o600)
        self.registry = Registry(self.ctx)
        self.devices = Devices(self.ctx)
        secret = bytes.fromhex(secret_file.read_text().strip())
        self.rollouts = Rollouts(self.ctx, CommandSender(self.ctx, secret))
        self.tokens = ApiTokens(self.ctx)
        self.telemetry = TelemetryWriter(
            engine,
            self.metrics,
            batch_size=s.telemetry_batch_size,
            interval_s=s.telemetry_flush_interval_s,
        )
        self.broker: EmbeddedBroker | None = None
        self.mqtt: MqttBridge | None = None
        # The rollout engine runs on the replica holding the "engine" lease (if allowed to).
        self.lease: LeaseKeeper | None = None
        self.ticker: RolloutTicker | None = None
        if s.run_engine:
            holder = f"{socket.gethostname()[:64]}/{self.instance}"
            self.lease = LeaseKeeper(engine, "engine", holder, s.engine_lease_s)
            self.ticker = RolloutTicker(self.rollouts.tick, self.lease, s.tick_interval_s)
        self.reports = ReportLoop(self.ctx, on_progress=self._wake_ticker)
        register_fleet_metrics(self.metrics, self.ctx.ReadSession, self.reports.inbox.qsize)
        if s.bootstrap_admin_token:
            self.tokens.ensure(s.bootstrap_admin_token, "admin", "bootstrap")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FleetService:
        s = self.settings
        self.telemetry.start()
        if s.mqtt_enabled:
            url, share = s.broker_url, s.share_group
            if not url:
                self.broker = EmbeddedBroker(port=s.embedded_broker_port).start()
                url, share = self.broker.url, None  # amqtt has no shared subscriptions
            # No stable replica id -> clean session under a unique id (see FleetSettings).
            if s.replica_id:
                client_id, clean = f"{s.mqtt_client_id}-{s.replica_id}", False
            else:
                client_id, clean = f"{s.mqtt_client_id}-{self.instance}", True
            self.mqtt = MqttBridge(
                url,
                s,
                client_id=client_id,
                clean_session=clean,
                share_group=share,
                metrics=self.metrics,
                on_telemetry=self.telemetry.put_many,
                on_message=self.reports.put,
            )
            self.ctx.publish = self.mqtt.publish
            self.mqtt.start()
        self.reports.start()
        if self.ticker is not None:
            self.ticker.start()
        return self

    def stop(self) -> None:
        if self.ticker is not None:
            self.ticker.stop()
        self.reports.stop()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.broker is not None:
            self.broker.stop()
        self.telemetry.stop()
        self.registry.store.close()
        self.ctx.engine.dispose()

    def __enter__(self) -> FleetService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wake_ticker(self) -> None:
        if self.ticker is not None:
            self.ticker.wake()

    def sync(self, timeout: float = 10.0) -> None:
        """Wait until everything received so far is in the database (tests, benchmarks)."""
        self.reports.sync(timeout)
        self.telemetry.flush(timeout)
