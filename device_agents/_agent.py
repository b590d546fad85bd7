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
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING

from edgefleet.sdk import ConfigError
from edgefleet.sdk.protocol import (
    CommandVerifier,
    State,
    cmd_topic,
    encode,
    inventory_topic,
    state_topic,
)

from ._active import ActiveModel
from ._client import connect_kwargs, make_client, refused_v5
from ._deploy import Deployer, DeployHooks
from ._fsutil import read_json
from ._handlers import AgentHandlers
from ._inventory import AGENT_VERSION, build_inventory, detect_profile_name
from ._journal import FileNonceStore, Journal, PendingCommands
from ._mux import Link, Mux
from ._settings import AgentSettings
from ._telemetry import PendingBatch, TelemetryQueue

if TYPE_CHECKING:
    from edgefleet.sdk import TrustPolicy

__all__ = ["Agent"]

log = logging.getLogger(__name__)

_fallback_logged = False  # one warning per process, not one per simulated agent


class Agent(AgentHandlers):
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
        self.config_path = root / "config.json"
        cfg = read_json(self.config_path) or {}
        self.telemetry_interval_s = float(cfg.get("telemetry_interval_s", s.telemetry_interval_s))
        self.cache_entries = int(cfg.get("cache_entries", s.cache_entries))
        self.cache_bytes = int(cfg.get("cache_bytes", s.cache_bytes))
        for key in [*s.fleet_keys, *s.trusted_package_keys]:
            if not key.is_file():  # fail at start, as when the keys were parsed here
                raise ConfigError(f"public key {key} does not exist")
        # A configured profile (a board detection cannot name, or a simulated device) picks
        # the runtime for serving and for the smoke test alike; None detects this machine.
        self.active = ActiveModel(
            self.store, trust=self.policy, backend=s.backend, profile=s.profile,
            cache=self._cache(),
        )  # fmt: skip
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
                profile=s.profile,
                smoke_test=s.smoke_test,
                fault_point=s.fault_point,
                download_token=s.device_token,
                http_timeout_s=s.http_timeout_s,
                download_retries=s.download_retries,
                windows=lambda: s.maintenance_windows,
            ),
        )
        self._own_mux = mux is None
        self.mux = mux or Mux()
        self._own_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix="edgefleet-work")
        self._work: deque = deque()
        self._busy = self._halt = False
        self._work_lock = threading.Lock()
        self._inflight: tuple[int, PendingBatch] | None = None
        self._tel_lock = threading.Lock()
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
        self._process = None

    # -- setup
    @functools.cached_property
    def profile_name(self) -> str | None:
        # Lazy: detection reads board files and profile TOMLs, not needed to come online.
        return detect_profile_name(self.settings.profile)

    @functools.cached_property
    def verifier(self) -> CommandVerifier | None:
        # Keys parsed (cryptography imported) at the first command, not before coming online.
        from edgefleet.sdk import load_public_key

        keys = [load_public_key(p) for p in self.settings.fleet_keys]
        store = FileNonceStore(self.settings.data_dir / "nonces.json")
        return CommandVerifier(self.device_id, keys, store) if keys else None

    @functools.cached_property
    def package_keys(self) -> list:
        from edgefleet.sdk import load_public_key

        return [load_public_key(p) for p in self.settings.trusted_package_keys]

    def policy(self) -> TrustPolicy:
        from edgefleet.sdk import TrustPolicy

        if self.package_keys:
            return TrustPolicy.device(*self.package_keys)
        return TrustPolicy()  # no key configured: unsigned packages only (development)

    def _cache(self):
        if self.cache_entries <= 0:
            return None
        from edgefleet.sdk import ResultCache

        return ResultCache(max_entries=self.cache_entries, max_bytes=self.cache_bytes)

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
        self._timer = self.mux.every(self.telemetry_interval_s, self.tick)
        if self.mqtt_version == "5":
            self._v5_timer = self.mux.every(0.25, self._check_connack)
        if self._own_mux:
            self.mux.start()
        if s.local_endpoint and s.serve_model:
            from ._endpoint import LocalEndpoint

            self.endpoint = LocalEndpoint(self.active, s.local_endpoint).start()
        self.submit(self.deployer.resume)
        self.submit(self.resume_pending)
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
        self._halt = True  # finish the running job only; the waiting ones are persisted
        if self._own_executor:
            self.executor.shutdown(wait=True, cancel_futures=True)
        if self.endpoint is not None:
            self.endpoint.stop()
        self.active.close()
        with self._tel_lock:
            self._closed = True
            self.queue.close()

    def stop(self, graceful: bool = True) -> None:
        if self._closed:
            return
        info = self.begin_stop() if graceful else None
        if info is not None:
            info.wait_for_publish(5.0)
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
                if not self._work or self._halt:
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
        self._send_telemetry()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._announce = False  # plain store: never wait on a lock in the network thread
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
