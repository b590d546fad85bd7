"""``edgefleet demo``: the whole system on one machine, in one process.

train + sign a package -> fleet (SQLite/PostgreSQL, embedded amqtt/Mosquitto) -> simulated
agents for three boards -> canary-then-waves rollout over the HTTP API -> device apps run
cached inference on the active slots -> telemetry back to the fleet -> summary.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgefleet.sdk import ConfigError

from ._board_views import backends
from ._boards import DeviceApps, demo_devices
from ._local_fleet import FleetApiError, FleetClient, LocalFleet, free_port, wait_for
from ._packages import TrainedPackage, cached_or_trained, demo_keys
from ._plan import DemoOptions, prepare_out, rollout_body

if TYPE_CHECKING:
    from edgefleet.device_agents import Simulation

__all__ = ["DemoOptions", "DemoUi", "Demo"]

log = logging.getLogger(__name__)

# The figures a reader looks for first lead the JSON line.
_FIRST = (
    "rollout_state",
    "devices_active",
    "predictions",
    "cache_hit_rate",
    "telemetry_messages",
    "accuracy",
    "wall_s",
)


class DemoUi(Protocol):
    def step(self, text: str) -> None: ...

    def paused(self) -> AbstractContextManager[None]:
        """While inside, another progress display (the trainer's bars) owns the terminal."""
        ...

    def done(self, text: str) -> None: ...

    def rollout(self, ro: dict) -> None: ...

    def stream(self, text: str) -> None:
        """Text as it arrives (a streamed answer), no newline added; inside ``paused``."""
        ...


@dataclass
class Demo:
    opts: DemoOptions
    ui: DemoUi
    fleet: LocalFleet | None = None
    client: FleetClient | None = None
    devices: Simulation | None = None
    apps: DeviceApps | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    _t0: float = field(default_factory=time.perf_counter)

    # -- steps
    def package(self) -> tuple[Path, Path, str, str]:
        """(package, public key, name, version): the given one, a reused one, or trained."""
        from ._digits import train_digits

        o = self.opts
        if o.package is not None:
            if o.package_key is None:
                raise ConfigError("--package needs --package-key (the public key it is signed by)")
            pkg, pub = o.package, o.package_key
        else:
            priv, pub = demo_keys(o.out / "keys")
            pkg = self._trained(
                "package",
                "training digits CNN, pruning, low-rank, int8, export, sign",
                lambda d: train_digits(
                    d, priv, epochs=o.epochs, formats=o.formats, quiet=o.quiet_training
                ),
                self.summary,
                "model_accuracy",
            )
        return pkg, pub, *_name_version(pkg, pub)

    def package_lm(self) -> tuple[Path, Path, str, str]:
        """The tiny LM for ``--generative``, signed with the demo's key (reused or trained)."""
        from ._tiny_lm import TINY_LM_RECIPE, train_tiny_lm

        priv, pub = demo_keys(self.opts.out / "keys")
        pkg = self._trained(
            "package-lm",
            f"training the tiny Llama LM ({TINY_LM_RECIPE} recipe), ONNX Runtime GenAI "
            "fp32/int8/int4 export, verify, sign",
            lambda d: train_tiny_lm(d, priv, quiet=self.opts.quiet_training),
            self.summary.setdefault("generative", {}),
            "next_token_agreement",
        )
        return pkg, pub, *_name_version(pkg, pub)

    def _trained(
        self,
        sub: str,
        what: str,
        train: Callable[[Path], TrainedPackage],
        into: dict[str, Any],
        accuracy_key: str,
    ) -> Path:
        """A package from ``--out/sub`` (a previous run's) or trained now, its figures
        recorded ``into`` the summary."""

        def run(directory: Path) -> TrainedPackage:
            self.ui.step(what)
            with self.ui.paused():  # the trainer's own progress bars own the terminal
                return train(directory)

        pkg, t = cached_or_trained(self.opts.out / sub, self.opts.retrain, run)
        if t is None:
            self.ui.done(f"reusing the trained package {pkg} (--retrain to train again)")
            return pkg
        into.update({"train_s": round(t.seconds, 1), accuracy_key: t.accuracy,
                     "artifacts": list(t.artifacts)})  # fmt: skip
        if t.failed:
            into["failed_exports"] = list(t.failed)
        self.ui.done(f"trained + signed {pkg.name} in {t.seconds:.0f}s: " + ", ".join(t.artifacts))
        return pkg

    def start_fleet(self, pubs: list[Path]) -> None:
        o = self.opts
        port = o.port
        if port:
            try:
                with socket.create_server(("127.0.0.1", port)):
                    pass
            except OSError:
                port = free_port()
                self.ui.done(f"port {o.port} is busy; the fleet uses {port}")
        self.ui.step("starting the fleet service")
        self.fleet = LocalFleet(
            o.out / "fleet", pubs, port=port, broker_url=o.broker, database_url=o.db
        ).start()
        self.client = FleetClient(self.fleet.url, self.fleet.admin_token)
        health = self.client.health()
        broker = o.broker or f"embedded amqtt {self.fleet.mqtt_url}"
        url = self.fleet.url
        self.ui.done(f"fleet at {url} (database {health['database']}, broker {broker})")
        self.ui.done(
            f"dashboard {url}/ and API docs {url}/docs; admin API token for both: "
            f"{self.fleet.admin_token}"
        )

    def upload(self, pkg: Path) -> None:
        try:
            mv = self.client.upload(pkg)
            self.ui.done(f"uploaded {mv['name']} {mv['version']} ({mv['size'] // 1024} KiB)")
        except FleetApiError as e:
            if "409" not in str(e):  # a persistent database may know it from a previous run
                raise
            self.ui.done(f"{pkg.name} is already registered in this fleet")

    def start_devices(self, pubs: list[Path]) -> None:
        o = self.opts
        n = o.per_profile * len(o.profiles)
        self.ui.step(f"starting {n} simulated devices ({', '.join(o.profiles)})")
        self.devices = demo_devices(
            o.out / "devices",
            broker_url=self.fleet.mqtt_url,
            fleet_keys=[self.fleet.fleet_key],
            package_keys=pubs,
            profiles=o.profiles,
            per_profile=o.per_profile,
            # amqtt (the embedded broker) speaks MQTT 3.1.1 only.
            mqtt_version="5" if o.broker else "3.1.1",
            # Generation is served on each board's local OpenAI-compatible endpoint.
            local_endpoint="127.0.0.1:0" if o.generative else None,
        ).start()
        wait_for(lambda: self.devices.online() == n, 60, f"{n} devices online on the broker")
        ids = set(self.devices.ids)

        def registered() -> bool:
            seen = {d["id"] for d in self.client.devices() if d["online"] and d["profile"]}
            return ids <= seen

        wait_for(registered, 60, "the fleet to register every device")
        self.apps = DeviceApps(
            self.devices.agents, o.rate, ask_rate=o.ask_rate, answer_tokens=o.answer_tokens
        ).start()
        self.ui.done(f"{n} devices online and registered; device apps started")

    def rollout(self, name: str, version: str) -> dict:
        self.ui.step(f"rolling out {name} {version}: canary, then waves")
        t0 = time.perf_counter()
        body = rollout_body(name, version, self.devices.ids, self.opts.soak_s)
        ro = self.client.create_rollout(body)
        ro = self.client.wait_rollout(
            ro["id"], timeout=self.opts.timeout_s, on_poll=self.ui.rollout
        )
        self.summary["rollout_s"] = round(time.perf_counter() - t0, 1)
        self.ui.done(
            f"rollout {ro['id']} {ro['status']} in {self.summary['rollout_s']}s "
            f"({ro['wave_count']} waves)"
        )
        return ro

    def traffic(self, seconds: float, min_predictions: int = 1) -> None:
        """Let the apps run so every device reports telemetry on the new version."""
        self.ui.step(f"device apps running inference for {seconds:.0f}s")
        time.sleep(seconds)
        wait_for(lambda: self.apps.totals().predictions >= min_predictions, 30, "predictions")
        wait_for(
            lambda: self.client.metrics().get("edgefleet_fleet_telemetry_rows_total", 0),
            30,
            "telemetry at the fleet",
        )

    # -- results
    def collect(self, ro: dict, name: str, version: str) -> dict:
        ref = f"{name}@{version}"
        fleet_devices = {d["id"]: d for d in self.client.devices()}
        ours = [fleet_devices[i] for i in self.devices.ids if i in fleet_devices]
        local = self.devices.versions()
        totals = self.apps.totals()
        hits = misses = 0
        for a in self.devices.agents:
            if a.active.cache is not None:
                st = a.active.cache.stats()
                hits, misses = hits + st.hits, misses + st.misses
        metrics = self.client.metrics()
        fleet_calls, fleet_hit_rate = self.client.telemetry_totals(ref)
        self.summary.update(
            rollout_state=ro["status"],
            rollout_id=ro["id"],
            waves=[w["size"] for w in ro["waves"]],
            model=ref,
            devices=len(self.devices.ids),
            devices_active=sum(1 for d in ours if d["active_model"] == ref),
            devices_active_local=sum(1 for v in local.values() if v == version),
            predictions=totals.predictions,
            prediction_errors=totals.errors,
            accuracy=round(totals.accuracy, 4) if totals.accuracy is not None else None,
            cache_hit_rate=round(hits / (hits + misses), 4) if hits + misses else None,
            telemetry_messages=int(metrics.get("edgefleet_fleet_telemetry_rows_total", 0)),
            mqtt_messages=int(metrics.get("edgefleet_fleet_mqtt_messages_total", 0)),
            # The same inference as the fleet learnt it from telemetry (lags by one interval).
            fleet_seen_calls=fleet_calls,
            fleet_seen_cache_hit_rate=round(fleet_hit_rate, 4) if fleet_hit_rate else None,
            backends=backends(self.devices.agents),
            dashboard=f"{self.fleet.url}/",
            broker="external" if self.opts.broker else "embedded amqtt",
            database=self.client.health()["database"],
        )
        first = {k: self.summary[k] for k in _FIRST if k in self.summary}
        self.summary = {**first, **self.summary}
        return self.summary

    def run(self, on_ready: Callable[[Demo], None] | None = None) -> dict:
        """Every step up to a completed rollout plus some traffic (then, with
        ``generative``, the LM's rollout and a streamed answer); returns the summary."""
        o = self.opts
        prepare_out(o.out, keep_fleet=bool(o.db))
        pkg, pub, name, version = self.package()
        lm = self.package_lm() if o.generative else None
        pubs = list(dict.fromkeys([pub] + ([lm[1]] if lm else [])))
        self.start_fleet(pubs)
        self.upload(pkg)
        if lm is not None:
            self.upload(lm[0])
        self.start_devices(pubs)
        ro = self.rollout(name, version)
        self.traffic(o.traffic_s)
        self.summary["wall_s"] = round(time.perf_counter() - self._t0, 1)
        self.collect(ro, name, version)
        if lm is not None:
            from ._generative import run_generative

            run_generative(self, lm[2], lm[3])
            self.summary["wall_s"] = round(time.perf_counter() - self._t0, 1)
        if on_ready is not None:
            on_ready(self)
        return self.summary

    def close(self) -> None:
        """Stop everything this demo started, in reverse order; safe to call twice."""
        for stop in (
            self.apps.stop if self.apps else None,
            self.devices.stop if self.devices else None,
            self.client.close if self.client else None,
            self.fleet.stop if self.fleet else None,
        ):
            if stop is None:
                continue
            try:
                stop()
            except Exception:  # keep shutting the rest down
                log.exception("demo shutdown step failed")
        self.apps = self.devices = self.client = self.fleet = None


def _name_version(pkg: Path, pub: Path) -> tuple[str, str]:
    """The package's name and version, read through the signature check a device makes."""
    from edgefleet.sdk import TrustPolicy, load_public_key, open_package

    with open_package(pkg, TrustPolicy.device(load_public_key(pub))) as p:
        return p.manifest.name, p.manifest.version
