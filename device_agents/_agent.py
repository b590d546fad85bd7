"""The device agent: MQTT session, command handling, deployments, telemetry.

One :class:`Agent` per device id. Network I/O runs on a :class:`Mux` thread (shared by many
agents in ``simulate``); deployments and benchmarks run on a worker pool, one job at a time
per agent, so a slow download never blocks the MQTT loop.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor

from edgefleet.sdk.protocol import (
    ConfigCommand,
    State,
    cmd_topic,
    encode,
    inventory_topic,
    state_topic,
)

from ._active import ActiveModel
from ._command_handler import CommandHandler
from ._deploy import Deployer, DeployHooks
from ._events import EventPublisher
from ._inventory import AGENT_VERSION, build_inventory, detect_profile_name
from ._isolation import SmokeIsolation
from ._journal import Journal, PendingCommands
from ._mqtt_client import connect_kwargs, make_client, refused_v5
from ._mux import Link, Mux
from ._runtime_config import RuntimeConfig
from ._settings import AgentSettings
from ._telemetry_queue import TelemetryQueue
from ._telemetry_sender import TelemetrySender
from ._trust import DeviceTrust
from ._work_queue import WorkQueue

__all__ = ["Agent"]

log = logging.getLogger(__name__)

_fallback_logged = False  # one warning per process, not one per simulated agent


class Agent:
    """One device's session and lifecycle; the work is done by the parts it wires up:
    ``commands`` (CommandHandler), ``deployer`` (Deployer), ``work`` (WorkQueue),
    ``telemetry`` (TelemetrySender), ``events`` (EventPublisher)."""

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
        self.pending = PendingCommands(root / "pending.json")
        self.queue = TelemetryQueue(root / "telemetry.db", self.device_id, s.telemetry_queue_max)
        self.config = RuntimeConfig(root / "config.json", s)
        self.trust = DeviceTrust(s)
        self.policy = self.trust.policy
        if s.backends:  # extra runtimes by import string, registered before anything loads
            from edgefleet.sdk.backends import register_backend

            for name, target in s.backends.items():
                register_backend(name, target)
        # A configured profile (a board detection cannot name, or a simulated device) picks
        # the runtime for serving and for the smoke test alike; None detects this machine.
        self.active = ActiveModel(
            self.store, trust=self.policy, backend=s.backend, profile=s.profile,
            cache=self._cache(),
        )  # fmt: skip
        self.endpoint = None
        self.events = EventPublisher(self.device_id, self.publish, self.publish_state)
        self.adapter = None
        self.deployer = Deployer(
            self.store,
            self.journal,
            root / "downloads",
            s,
            DeployHooks(
                emit=self.events.deployment,
                policy=self.policy,
                profile_name=lambda: self.profile_name,
                probe=self._probe,
                traffic=self._traffic,
                isolation=SmokeIsolation(
                    tuple(s.trusted_package_keys), dict(s.backends), s.smoke_timeout_s
                ) if s.smoke_isolated else None,
            ),
        )  # fmt: skip
        self._own_mux = mux is None
        self.mux = mux or Mux()
        self._own_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix="edgefleet-work")
        self.work = WorkQueue(self.executor, self.device_id, after_each=self.publish_state)
        self.telemetry = TelemetrySender(
            self.queue, self.active, s.telemetry_batch_max,
            publish=lambda topic, payload, qos: self.client.publish(topic, payload, qos=qos),
            ready=lambda: self.connected.is_set() and not self._stopping,
            extra=lambda: self.adapter.telemetry() if self.adapter is not None else None,
        )  # fmt: skip
        self.commands = CommandHandler(
            self.events, lambda: self.trust.verifier, self.pending, self.work, self.deployer,
            configure=self.configure,
        )  # fmt: skip
        self._closed = self._stopping = False
        self._state_lock = threading.Lock()
        self._sub_mid = -1
        # "online" is announced only once the command subscription is on its way: a state a
        # worker published while the CONNACK was in flight went out ahead of the SUBSCRIBE,
        # and a command sent in reaction to that "online" was lost (seen under load).
        self._announce = False
        self.connected = threading.Event()
        self.mqtt_version = s.mqtt_version  # "3.1.1" once a broker refused MQTT 5
        self.client = self._make_client()
        self.link: Link | None = None
        self._timer: list | None = None
        self._v5_timer: list | None = None
        self._connack_seen = False

    # -- setup
    @functools.cached_property
    def profile_name(self) -> str | None:
        # Lazy: detection reads board files and profile TOMLs, not needed to come online.
        return detect_profile_name(self.settings.profile)

    def _cache(self):
        if self.config.cache_entries <= 0:
            return None
        from edgefleet.sdk import ResultCache

        return ResultCache(max_entries=self.config.cache_entries, max_bytes=self.config.cache_bytes)

    def _make_client(self):
        will = encode(self.state(False))
        c = make_client(self.settings, will, self.mqtt_version)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        return c

    def start(self) -> Agent:
        s = self.settings
        self.link = self.mux.add(
            Link(
                self.client,
                s.broker_host,
                s.broker_port,
                s.keepalive_s,
                connect_kwargs(self.settings, self.mqtt_version),
                min_delay=s.reconnect_min_s,
                max_delay=s.reconnect_max_s,
            )
        )
        self._timer = self.mux.every(self.config.telemetry_interval_s, self.telemetry.tick)
        if self.mqtt_version == "5":
            self._v5_timer = self.mux.every(0.25, self._check_connack)
        if self._own_mux:
            self.mux.start()
        if s.local_endpoint and s.serve_model:
            from ._batcher import BatchingOptions
            from ._endpoint import LocalEndpoint

            batching = BatchingOptions(
                s.batch_max_size, s.batch_max_delay_us, workers=s.batch_workers
            )
            if s.adapt:
                from ._adapt import start_adapter

                self.adapter = start_adapter(self, s)
            admit = self.adapter.admit if self.adapter else None
            self.endpoint = LocalEndpoint(self.active, s.local_endpoint, batching, admit).start()
        self.work.submit(self.deployer.resume)
        self.work.submit(self.commands.resume_pending)
        return self

    def begin_stop(self):
        """Publish the retained offline state; returns its MQTTMessageInfo (or None)."""
        with self._state_lock:
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
        sock = self.client.socket()
        if sock is not None:  # DISCONNECT not written in time: close it ourselves (no leak)
            sock.close()
        for timer in (self._timer, self._v5_timer):
            if timer is not None:
                timer[0] = timer[1] = float("inf")
        if self._own_mux:
            self.mux.stop()
        self.work.halt()  # finish the running job only; the waiting ones are persisted
        if self._own_executor:
            self.executor.shutdown(wait=True, cancel_futures=True)
        if self.endpoint is not None:
            self.endpoint.stop()
        if self.adapter is not None:
            self.adapter.stop()
        self.active.close()
        self.telemetry.close()
        self._closed = True

    def stop(self, graceful: bool = True) -> None:
        if self._closed:
            return
        info = self.begin_stop() if graceful else None
        if info is not None:
            info.wait_for_publish(5.0)
        self.finish_stop()

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
        # Under the lock so a late "online" from a worker never lands after the "offline".
        with self._state_lock:
            if not self._stopping and self._announce:
                self.publish(state_topic(self.device_id), self.state(True), retain=True)

    # -- paho callbacks (mux thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connack_seen = True
        if reason_code.is_failure:
            if self.mqtt_version == "5" and refused_v5(reason_code) and self.link is not None:
                self._fall_back_to_311()
                return
            log.error("%s: broker refused the connection: %s", self.device_id, reason_code)
            return
        if self.link is not None:
            Mux.connected(self.link)
        with self._state_lock:
            self._sub_mid = client.subscribe(cmd_topic(self.device_id), qos=1)[1]
            self._announce = True
        self.publish_state()
        s = self.settings
        inv = build_inventory(self.device_id, s.data_dir, s.profile, s.tags, s.maintenance_windows)
        self.publish(inventory_topic(self.device_id), inv, retain=True)

    def _check_connack(self) -> None:
        """Mux timer while on MQTT 5 and no CONNACK yet: a broker silent for
        ``mqtt5_connack_timeout_s`` after our CONNECT is taken as 3.1.1-only."""
        link = self.link
        if self._connack_seen or self.mqtt_version != "5":
            if self._v5_timer is not None:
                self._v5_timer[0] = self._v5_timer[1] = float("inf")
            return
        if link is None or link.closed or not link.attempt_at or self.client.socket() is None:
            return
        if time.monotonic() - link.attempt_at >= self.settings.mqtt5_connack_timeout_s:
            old = self.client
            self._fall_back_to_311("no CONNACK to MQTT 5")
            sock = old.socket()
            if sock is not None:  # the old client is off the mux: close its socket here
                sock.close()

    def _fall_back_to_311(self, why: str = "refused MQTT 5") -> None:
        """The broker speaks only MQTT 3.1.1 (e.g. the fleet's embedded amqtt): reconnect
        with a 3.1.1 client (persistent session via clean_session False) from now on."""
        global _fallback_logged
        level = logging.DEBUG if _fallback_logged else logging.WARNING
        _fallback_logged = True
        log.log(level, "%s: broker %s %s; falling back to MQTT 3.1.1",
                self.device_id, self.settings.broker_url, why)  # fmt: skip
        self.mqtt_version = "3.1.1"
        self.client = self._make_client()
        self.mux.replace_client(self.link, self.client, connect_kwargs(self.settings, "3.1.1"))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid != self._sub_mid:
            return
        if any(rc.is_failure for rc in reason_codes):
            log.error("%s: broker refused the command subscription: %s", self.device_id,
                      reason_codes)  # fmt: skip
        # Ready only once the command subscription is in place: before that a command
        # published to us could be dropped by the broker.
        self.connected.set()
        log.info("%s: online at %s", self.device_id, self.settings.broker_url)
        self.telemetry.send()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._announce = False  # plain store: never wait on a lock in the network thread
        self.connected.clear()
        log.info("%s: disconnected (%s)", self.device_id, reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        self.commands.handle(msg.topic, msg.payload)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.telemetry.on_publish(mid)

    # -- run-time configuration and health (used by the parts above)
    def configure(self, cmd: ConfigCommand) -> None:
        changed = self.config.apply(cmd)
        if "telemetry_interval_s" in changed and self._timer is not None:
            self._timer[1] = cmd.telemetry_interval_s
            self._timer[0] = min(self._timer[0], self._timer[1])
        if changed & {"cache_entries", "cache_bytes"}:
            self.active.set_cache(self._cache())

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
