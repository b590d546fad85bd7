"""The device agent: MQTT session, command handling, deployments, telemetry.

One :class:`Agent` per device id. Network I/O runs on a :class:`Mux` thread (shared by many
agents in ``simulate``); deployments and benchmarks run on a worker pool, one job at a time
per agent, so a slow download never blocks the MQTT loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor

from edgefleet.sdk import TrustPolicy, load_public_key
from edgefleet.sdk.protocol import (
    BenchmarkCommand,
    CancelCommand,
    CommandAck,
    CommandRejected,
    CommandVerifier,
    ConfigCommand,
    DeployCommand,
    DeploymentEvent,
    DeploymentState,
    ErrorEvent,
    ProtocolError,
    RollbackCommand,
    State,
    cmd_topic,
    decode,
    encode,
    events_topic,
    inventory_topic,
    state_topic,
    telemetry_topic,
)

from ._active import ActiveModel
from ._commands import run_benchmark
from ._deploy import Deployer, DeployHooks
from ._fsutil import read_json, write_json_atomic
from ._inventory import AGENT_VERSION, build_inventory, detect_profile_name
from ._journal import DeploymentRecord, FileNonceStore, Journal
from ._mux import Link, Mux
from ._settings import AgentSettings
from ._telemetry import PendingBatch, TelemetryQueue, system_sample

__all__ = ["Agent"]

log = logging.getLogger(__name__)


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        mux: Mux | None = None,
        executor: Executor | None = None,
    ) -> None:
        s = self.settings = settings
        self.device_id = s.device_id
        root = s.data_dir
        root.mkdir(parents=True, exist_ok=True)
        from ._store import ModelStore

        self.store = ModelStore(root / "store")
        self.store.repair()
        self.journal = Journal(root / "deployment.json")
        self.queue = TelemetryQueue(root / "telemetry.db", self.device_id, s.telemetry_queue_max)
        self.config_path = root / "config.json"
        cfg = read_json(self.config_path) or {}
        self.telemetry_interval_s = float(cfg.get("telemetry_interval_s", s.telemetry_interval_s))
        self.cache_entries = int(cfg.get("cache_entries", s.cache_entries))
        self.cache_bytes = int(cfg.get("cache_bytes", s.cache_bytes))
        fleet_keys = [load_public_key(p) for p in s.fleet_keys]
        self.package_keys = [load_public_key(p) for p in s.trusted_package_keys]
        self.verifier = (
            CommandVerifier(self.device_id, fleet_keys, FileNonceStore(root / "nonces.json"))
            if fleet_keys
            else None
        )
        self.profile_name = detect_profile_name(s.profile)
        self.active = ActiveModel(
            self.store, trust=self.policy(), backend=s.backend, cache=self._cache()
        )
        self.endpoint = None
        self.deployer = Deployer(
            self.store,
            self.journal,
            root / "downloads",
            DeployHooks(
                emit=self._emit,
                policy=self.policy,
                profile_name=lambda: self.profile_name,
                probe=self._probe,
                traffic=self._traffic,
                backend=s.backend,
                smoke_test=s.smoke_test,
                fault_point=s.fault_point,
                download_token=s.device_token,
                http_timeout_s=s.http_timeout_s,
                download_retries=s.download_retries,
            ),
        )
        self._own_mux = mux is None
        self.mux = mux or Mux()
        self._own_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix="edgefleet-work")
        self._work: deque = deque()
        self._busy = False
        self._work_lock = threading.Lock()
        self._inflight: tuple[int, PendingBatch] | None = None
        self._tel_lock = threading.Lock()
        self._closed = self._stopping = False
        self.connected = threading.Event()
        self.client = self._make_client()
        self.link: Link | None = None
        self._timer: list | None = None
        self._process = None

    # -- setup
    def policy(self) -> TrustPolicy:
        if self.package_keys:
            return TrustPolicy.device(*self.package_keys)
        return TrustPolicy()  # no key configured: unsigned packages only (development)

    def _cache(self):
        if self.cache_entries <= 0:
            return None
        from edgefleet.sdk import ResultCache

        return ResultCache(max_entries=self.cache_entries, max_bytes=self.cache_bytes)

    def _make_client(self):
        import paho.mqtt.client as mqtt

        s = self.settings
        v5 = s.mqtt_version == "5"
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.device_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,  # persistent session: no lost commands
        )
        if s.username:
            c.username_pw_set(s.username, s.password)
        if s.use_tls:
            c.tls_set(
                ca_certs=str(s.tls_ca) if s.tls_ca else None,
                certfile=str(s.tls_cert) if s.tls_cert else None,
                keyfile=str(s.tls_key) if s.tls_key else None,
            )
            c.tls_insecure_set(s.tls_insecure)
        c.will_set(state_topic(self.device_id), encode(self.state(False)), qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        return c

    def _connect_kwargs(self) -> dict:
        if self.settings.mqtt_version != "5":
            return {}
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry_s
        return {"clean_start": False, "properties": props}

    def start(self) -> Agent:
        s = self.settings
        self.link = self.mux.add(
            Link(
                self.client,
                s.broker_host,
                s.broker_port,
                s.keepalive_s,
                self._connect_kwargs(),
                min_delay=s.reconnect_min_s,
                max_delay=s.reconnect_max_s,
            )
        )
        self._timer = self.mux.every(self.telemetry_interval_s, self.tick)
        if self._own_mux:
            self.mux.start()
        if s.local_endpoint and s.serve_model:
            from ._endpoint import LocalEndpoint

            self.endpoint = LocalEndpoint(self.active, s.local_endpoint).start()
        self.submit(self.deployer.resume)
        return self

    def begin_stop(self):
        """Publish the retained offline state; returns its MQTTMessageInfo (or None)."""
        self._stopping = True
        if not self.connected.is_set():
            return None
        info = self.publish(state_topic(self.device_id), self.state(False), retain=True)
        self.mux.wake()
        return info

    def finish_stop(self, wait_disconnect: bool = True) -> None:
        if self.link is not None:
            self.link.closed = True  # the loop must not reconnect it
        self.client.disconnect()
        self.mux.wake()
        deadline = time.monotonic() + (1.0 if wait_disconnect else 0.0)
        while self.client.socket() is not None and time.monotonic() < deadline:
            time.sleep(0.01)  # let the loop thread write DISCONNECT (no Will then)
        if self.link is not None:
            self.mux.remove(self.link)
        if self._timer is not None:
            self._timer[0] = self._timer[1] = float("inf")
        if self._own_mux:
            self.mux.stop()
        if self._own_executor:
            self.executor.shutdown(wait=True, cancel_futures=True)
        if self.endpoint is not None:
            self.endpoint.stop()
        self.active.close()
        with self._tel_lock:
            self._closed = True
            self.queue.close()

    def stop(self, graceful: bool = True) -> None:
        info = self.begin_stop() if graceful else None
        if info is not None:
            info.wait_for_publish(2.0)
        self.finish_stop()

    # -- work queue: one job at a time per agent on a (possibly shared) executor
    def submit(self, fn, *args) -> None:
        with self._work_lock:
            self._work.append((fn, args))
            if self._busy:
                return
            self._busy = True
        self.executor.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._work_lock:
                if not self._work:
                    self._busy = False
                    return
                fn, args = self._work.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("%s: background job failed", self.device_id)
            finally:
                self.publish_state()

    # -- publishing
    def publish(self, topic: str, msg, retain: bool = False, qos: int = 1):
        return self.client.publish(topic, encode(msg), qos=qos, retain=retain)

    def state(self, online: bool = True) -> State:
        rec = self.journal.load()
        return State(
            device_id=self.device_id,
            online=online,
            agent_version=AGENT_VERSION,
            active_slot=self.store.active_slot(),
            slots=self.store.slots(),
            deployment_id=rec.deployment_id if rec else None,
            deployment_state=rec.state if rec else None,
        )

    def publish_state(self) -> None:
        self.publish(state_topic(self.device_id), self.state(True), retain=True)

    def _emit(self, rec: DeploymentRecord, prev, progress) -> None:
        cmd = rec.command
        event = DeploymentEvent(
            device_id=self.device_id,
            deployment_id=cmd.deployment_id,
            state=rec.state,
            previous_state=prev,
            package_name=cmd.package_name,
            package_version=cmd.package_version,
            slot=rec.to_slot,
            reason=rec.reason[:2000],
            progress=progress,
        )
        log.info("%s: deployment %s -> %s %s", self.device_id, cmd.deployment_id,
                 rec.state.value, rec.reason)  # fmt: skip
        self.publish(events_topic(self.device_id), event)
        self.publish_state()

    def ack(self, cmd, accepted: bool, reason: str = "", detail: str = "", result=None) -> None:
        self.publish(
            events_topic(self.device_id),
            CommandAck(
                device_id=self.device_id,
                command_id=cmd.command_id,
                action=cmd.type,
                accepted=accepted,
                reason=reason,
                detail=detail[:2000],
                result=result or {},
            ),
        )

    # -- paho callbacks (mux thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("%s: broker refused the connection: %s", self.device_id, reason_code)
            return
        if self.link is not None:
            Mux.connected(self.link)
        client.subscribe(cmd_topic(self.device_id), qos=1)
        self.publish_state()
        inv = build_inventory(
            self.device_id, self.settings.data_dir, self.profile_name, self.settings.tags
        )
        self.publish(inventory_topic(self.device_id), inv, retain=True)
        self.connected.set()
        log.info("%s: online at %s", self.device_id, self.settings.broker_url)
        self._send_telemetry()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        log.info("%s: disconnected (%s)", self.device_id, reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        self.handle(msg.topic, msg.payload)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._tel_lock:
            inflight = self._inflight
            if self._closed or inflight is None or inflight[0] != mid:
                return
            self._inflight = None
            self.queue.ack(inflight[1])
        self._send_telemetry()

    # -- commands
    def handle(self, topic: str, payload: bytes) -> None:
        try:
            cmd = decode(topic, payload)
        except ProtocolError as e:
            log.warning("%s: malformed command: %s", self.device_id, e)
            self.publish(
                events_topic(self.device_id),
                ErrorEvent(
                    device_id=self.device_id, code="malformed", message=str(e)[:2000], topic=topic
                ),  # fmt: skip
            )
            return
        try:
            if self.verifier is None:
                raise CommandRejected("no_trusted_key", "no fleet key configured on this device")
            self.verifier.verify(cmd)
        except CommandRejected as e:
            log.warning("%s: command %s refused: %s", self.device_id, cmd.command_id, e)
            self.ack(cmd, False, e.reason, str(e))
            if isinstance(cmd, DeployCommand):
                rec = DeploymentRecord(
                    command=cmd, state=DeploymentState.REJECTED, reason=str(e),
                    updated_at=cmd.issued_at,
                )  # fmt: skip
                self._emit_only(rec)
            return
        self.ack(cmd, True)
        if isinstance(cmd, DeployCommand):
            self.submit(self.deployer.deploy, cmd)
        elif isinstance(cmd, CancelCommand):
            self.deployer.hooks.canceled.add(cmd.deployment_id)
        elif isinstance(cmd, RollbackCommand):
            self.submit(self._rollback, cmd)
        elif isinstance(cmd, BenchmarkCommand):
            self.submit(self._benchmark, cmd)
        elif isinstance(cmd, ConfigCommand):
            self._configure(cmd)

    def _emit_only(self, rec: DeploymentRecord) -> None:
        cmd = rec.command
        self.publish(
            events_topic(self.device_id),
            DeploymentEvent(
                device_id=self.device_id, deployment_id=cmd.deployment_id, state=rec.state,
                package_name=cmd.package_name, package_version=cmd.package_version,
                reason=rec.reason[:2000],
            ),
        )  # fmt: skip

    def _rollback(self, cmd: RollbackCommand) -> None:
        p = self.store.pointer()
        if p is None or p.previous is None or not self.store.has_package(p.previous):
            self.ack(cmd, False, "no_previous", "no previous model to roll back to")
            return
        undone = self.store.slot_info(p.slot)
        self.store.activate(p.previous)
        self.publish(
            events_topic(self.device_id),
            DeploymentEvent(
                device_id=self.device_id,
                deployment_id=cmd.deployment_id or (undone.deployment_id if undone else "") or "-",
                state=DeploymentState.ROLLED_BACK,
                package_name=undone.package_name if undone else "",
                package_version=undone.package_version if undone else "",
                slot=p.previous,
                reason="rollback requested by the fleet",
            ),
        )

    def _benchmark(self, cmd: BenchmarkCommand) -> None:
        slot = self.store.active_slot() if cmd.slot == "active" else cmd.slot
        try:
            result = run_benchmark(self.store, slot, cmd, self.policy(), self.settings.backend)
        except Exception as e:
            self.ack(cmd, False, "benchmark_failed", str(e))
            return
        self.ack(cmd, True, detail="benchmark", result=result)

    def _configure(self, cmd: ConfigCommand) -> None:
        if cmd.telemetry_interval_s is not None:
            self.telemetry_interval_s = cmd.telemetry_interval_s
            if self._timer is not None:
                self._timer[1] = cmd.telemetry_interval_s
                self._timer[0] = min(self._timer[0], self._timer[1])
        if cmd.cache_entries is not None or cmd.cache_bytes is not None:
            self.cache_entries = cmd.cache_entries if cmd.cache_entries is not None else (
                self.cache_entries)  # fmt: skip
            self.cache_bytes = cmd.cache_bytes if cmd.cache_bytes is not None else self.cache_bytes
            self.active.set_cache(self._cache())
        write_json_atomic(
            self.config_path,
            {
                "telemetry_interval_s": self.telemetry_interval_s,
                "cache_entries": self.cache_entries,
                "cache_bytes": self.cache_bytes,
            },
        )

    # -- health
    def _probe(self) -> bool:
        if not self.settings.serve_model:
            return True
        try:
            model = self.active.refresh(force=True)
            return model is not None and model.smoke_test().passed
        except Exception as e:
            log.warning("%s: health probe failed: %s", self.device_id, e)
            return False

    def _traffic(self) -> tuple[int, int]:
        return self.endpoint.traffic() if self.endpoint is not None else (0, 0)

    # -- telemetry (mux thread)
    def tick(self) -> None:
        if self._process is None:
            import psutil

            self._process = psutil.Process()
            self._process.cpu_percent(None)
        model = self.active.loaded
        snap = model.metrics.snapshot(reset=True) if model is not None else None
        label = f"{model.info.name}@{model.info.version}" if model is not None else None
        sample = system_sample(self._process, snap, label)
        with self._tel_lock:
            if self._closed:
                return
            self.queue.append(sample)
        self._send_telemetry()

    def _send_telemetry(self) -> None:
        if not self.connected.is_set() or self._stopping:
            return
        with self._tel_lock:
            if self._closed or self._inflight is not None:
                return
            pending = self.queue.next_batch(self.settings.telemetry_batch_max)
            if pending is None:
                return
            info = self.client.publish(
                telemetry_topic(self.device_id), encode(pending.batch), qos=1
            )
            self._inflight = (info.mid, pending)
