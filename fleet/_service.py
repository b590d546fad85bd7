"""FleetService: wires store, registry, devices, rollouts, telemetry and MQTT together."""

from __future__ import annotations

import logging
import queue
import secrets
import socket
import threading
import time

from edgefleet.sdk.protocol import (
    TERMINAL_STATES,
    CommandAck,
    DeploymentEvent,
    Inventory,
    State,
)
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from ._auth import (
    ROLES,
    Principal,
    hash_secret,
    new_token,
    parse_token,
    verify_secret,
)
from ._broker import EmbeddedBroker
from ._context import Context, load_or_create_signing_key
from ._db import READ_ONLY, ApiToken, Device, make_engine, make_sessionmaker
from ._devices import Devices, apply_inventory, apply_state
from ._errors import AuthError, BadRequestError, NotFoundError
from ._lease import LeaseKeeper
from ._metrics import Metrics, register_fleet_metrics
from ._migrate import upgrade_database
from ._mqtt import MqttBridge
from ._registry import Registry
from ._rollouts import Rollouts
from ._settings import FleetSettings
from ._telemetry import TelemetryWriter

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
        self.lease: LeaseKeeper | None = None
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
        self.rollouts = Rollouts(self.ctx, bytes.fromhex(secret_file.read_text().strip()))
        self.telemetry = TelemetryWriter(
            engine,
            self.metrics,
            batch_size=s.telemetry_batch_size,
            interval_s=s.telemetry_flush_interval_s,
        )
        self.broker: EmbeddedBroker | None = None
        self.mqtt: MqttBridge | None = None
        self._inbox: queue.Queue = queue.Queue(maxsize=200_000)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._describe_metrics()
        if s.bootstrap_admin_token:
            self.ensure_token(s.bootstrap_admin_token, "admin", "bootstrap")

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
                client_id=client_id,
                clean_session=clean,
                username=s.mqtt_username,
                password=s.mqtt_password,
                share_group=share,
                max_payload_bytes=s.max_payload_bytes,
                metrics=self.metrics,
                on_telemetry=self.telemetry.put_many,
                on_message=self._inbox.put_nowait,
            )
            self.ctx.publish = self.mqtt.publish
            self.mqtt.start()
        loops = [(self._ingest_loop, "fleet-ingest")]
        if s.run_engine:
            holder = f"{socket.gethostname()[:64]}/{self.instance}"
            self.lease = LeaseKeeper(self.ctx.engine, "engine", holder, s.engine_lease_s)
            loops.append((self._tick_loop, "fleet-tick"))
        for target, name in loops:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._inbox.put(None)
        for t in self._threads:
            t.join(10)
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

    # ------------------------------------------------------------------ loops

    def _tick_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.tick_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                leader = self.lease.acquire()
            except OperationalError as e:  # database busy or away: not the leader this tick
                log.warning("engine lease: %s", e.orig)
                continue
            if leader:
                self.rollouts.tick()
        try:
            self.lease.release()  # so another replica takes over at once
        except OperationalError as e:
            log.warning("engine lease not released (expires by itself): %s", e.orig)

    def _ingest_loop(self) -> None:
        while True:
            item = self._inbox.get()
            batch = [item]
            while len(batch) < 1000:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            msgs = [m for m in batch if m is not None and not isinstance(m, threading.Event)]
            for attempt in range(3):
                try:
                    if msgs:
                        self._ingest(msgs)
                    break
                except Exception:  # keep ingesting; a batch that keeps failing is counted
                    log.exception("ingesting %d messages failed (attempt %d)", len(msgs), attempt)
                    self.metrics.inc("edgefleet_fleet_ingest_errors_total")
                    time.sleep(0.1 * (attempt + 1))
            for m in batch:
                if isinstance(m, threading.Event):
                    m.set()
            if any(m is None for m in batch):
                return

    def _ingest(self, msgs: list) -> None:
        now = self.ctx.clock()
        progressed = False
        with self.ctx.Session() as db, db.no_autoflush:
            # Prefetch everything the batch touches: one query instead of one per message.
            ids = {m.device_id for m in msgs if isinstance(m, State | Inventory)}
            known = {d.id: d for d in db.scalars(select(Device).where(Device.id.in_(ids)))}
            pairs = {
                (rid, m.device_id)
                for m in msgs
                if (isinstance(m, DeploymentEvent) or _outcome_in_state(m))
                and (rid := self.rollouts.rollout_of(m.deployment_id)) is not None
            }
            rds = self.rollouts.prefetch(db, pairs)
            for m in msgs:
                if isinstance(m, State):
                    if apply_state(db, m, known) is not None and _outcome_in_state(m):
                        # The retained state carries how the last deployment ended: a fleet
                        # that was down (or missed the event) catches up from it.
                        progressed |= self.rollouts.apply_event(
                            db, m.device_id, m.deployment_id, m.deployment_state.value,
                            "", now, rds,
                        )  # fmt: skip
                elif isinstance(m, Inventory):
                    apply_inventory(db, m, known)
                elif isinstance(m, DeploymentEvent):
                    progressed |= self.rollouts.apply_event(
                        db, m.device_id, m.deployment_id, m.state.value, m.reason, now, rds
                    )
                elif isinstance(m, CommandAck) and not m.accepted:
                    log.warning(
                        "device %s refused %s %s: %s %s",
                        m.device_id,
                        m.action,
                        m.command_id,
                        m.reason,
                        m.detail,
                    )
                    # "replayed" = a QoS 1 redelivery of a command the device already took.
                    if m.action == "cmd.deploy" and m.reason != "replayed":
                        progressed |= self.rollouts.reject(
                            db, m.device_id, m.command_id, f"{m.reason}: {m.detail}", now
                        )
            db.commit()
        self.metrics.inc("edgefleet_fleet_ingested_total", len(msgs))
        if progressed:
            self._wake.set()

    def sync(self, timeout: float = 10.0) -> None:
        """Wait until everything received so far is in the database (tests, benchmarks)."""
        ev = threading.Event()
        self._inbox.put(ev)
        if not ev.wait(timeout):
            raise TimeoutError("ingest did not catch up")
        self.telemetry.flush(timeout)

    # ------------------------------------------------------------------ API tokens

    def create_token(self, role: str, name: str = "") -> str:
        if role not in ROLES:
            raise BadRequestError(f"unknown role {role!r}; expected one of {list(ROLES)}")
        tid, token, secret = new_token()
        with self.ctx.Session() as db:
            db.add(ApiToken(id=tid, name=name, role=role, secret_hash=hash_secret(secret)))
            db.commit()
        return token

    def ensure_token(self, token: str, role: str, name: str) -> None:
        tid, secret = parse_token(token)
        with self.ctx.Session() as db:
            if db.get(ApiToken, tid) is None:
                db.add(ApiToken(id=tid, name=name, role=role, secret_hash=hash_secret(secret)))
                db.commit()

    def list_tokens(self) -> list[ApiToken]:
        with self.ctx.ReadSession() as db:
            return list(db.scalars(select(ApiToken).order_by(ApiToken.created_at)))

    def revoke_token(self, tid: str) -> None:
        with self.ctx.Session() as db:
            row = db.get(ApiToken, tid)
            if row is None:
                raise NotFoundError(f"token {tid!r} does not exist")
            row.revoked = True
            db.commit()
        self.ctx.tokens.forget(tid)

    def authenticate(self, token: str) -> Principal:
        cached = self.ctx.tokens.get(token)
        if cached is not None:
            return cached
        tid, secret = parse_token(token)
        with self.ctx.ReadSession() as db:
            row = db.get(ApiToken, tid)
        stored = row.secret_hash if row is not None and not row.revoked else None
        if not verify_secret(stored, secret):
            raise AuthError("invalid or revoked API token")
        p = Principal("api", tid, row.role)
        self.ctx.tokens.put(token, p)
        return p

    # ------------------------------------------------------------------ metrics

    def _describe_metrics(self) -> None:
        register_fleet_metrics(self.metrics, self.ctx.ReadSession, self._inbox.qsize)

    def wait_for(self, predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return bool(predicate())


def _outcome_in_state(m: object) -> bool:
    """A device State reporting a finished deployment (in-flight steps come as events)."""
    return (
        isinstance(m, State)
        and m.online
        and m.deployment_id is not None
        and m.deployment_state in TERMINAL_STATES
    )
