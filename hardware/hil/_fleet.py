"""The fleet executor: a user's own devices are the device farm.

Finds online devices of each target profile from their retained inventory and state, sends
each a signed ``cmd.benchmark`` over MQTT (one per runtime), and turns the acknowledged
figures into matrix cells. Only the SDK's wire protocol is used; no fleet service needed.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

from edgefleet.sdk import protocol as p

from ._matrix_spec import MatrixSpec
from ._results import CellResult, CheckResult

__all__ = ["FleetSession", "run_fleet_cells"]

log = logging.getLogger(__name__)

_NO_PARITY = ("the benchmark command compares no golden outputs; the agent's activation "
              "smoke test did before this package became active")  # fmt: skip
_UNRUNNABLE = ("no installed runtime can run", "no artifact", "not installed")


class FleetSession:
    """One MQTT connection that collects device inventories, states and command acks."""

    def __init__(self, broker_url: str, username: str | None = None, password: str | None = None):
        import paho.mqtt.client as mqtt

        url = urlparse(broker_url)
        self.inventories: dict[str, p.Inventory] = {}
        self.online: dict[str, bool] = {}
        self.acks: dict[str, list[p.CommandAck]] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"edgefleet-hil-{uuid.uuid4().hex[:8]}"
        )
        if username:
            self.client.username_pw_set(username, password)
        if url.scheme == "mqtts":
            self.client.tls_set()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(url.hostname or "127.0.0.1", url.port or 1883)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        topics = [(p.device_filter(k), 1) for k in ("inventory", "state", "events")]
        client.subscribe(topics)

    def _on_message(self, client, userdata, msg) -> None:
        try:
            m = p.decode(msg.topic, msg.payload)
        except p.ProtocolError as e:  # a stranger on the broker must not stop the run
            log.debug("ignoring %s: %s", msg.topic, e)
            return
        with self._lock:
            if isinstance(m, p.Inventory):
                self.inventories[m.device_id] = m
            elif isinstance(m, p.State):
                self.online[m.device_id] = m.online
            elif isinstance(m, p.CommandAck):
                self.acks.setdefault(m.command_id, []).append(m)

    def discover(self, wait_s: float) -> dict[str, p.Inventory]:
        """Online devices by id, after waiting ``wait_s`` for retained messages to arrive."""
        if not self._subscribed.wait(10.0):
            raise TimeoutError("the MQTT broker did not confirm the subscription within 10 s")
        time.sleep(wait_s)
        with self._lock:
            return {d: inv for d, inv in self.inventories.items() if self.online.get(d)}

    def send(self, cmd) -> None:
        self.client.publish(p.cmd_topic(cmd.device_id), p.encode(cmd), qos=1).wait_for_publish(10)

    def result_of(self, command_id: str) -> p.CommandAck | None:
        """The final ack: a refusal, or the acceptance that carries the figures."""
        with self._lock:
            for ack in self.acks.get(command_id, []):
                if not ack.accepted or ack.result:
                    return ack
        return None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _cell(target: str, device: str, runtime: str, package: str, **kw) -> CellResult:
    return CellResult(target, f"fleet:{device}", runtime, package, **kw)


def _from_ack(target: str, device: str, runtime: str, ack, budgets: dict) -> CellResult:
    if ack is None:
        no_answer = CheckResult("load", "error", "the device did not answer in time")
        return _cell(target, device, runtime, "?", checks=[no_answer])
    if not ack.accepted:
        text = f"{ack.reason}: {ack.detail}"
        if any(s in ack.detail for s in _UNRUNNABLE):
            return _cell(target, device, runtime, "?", not_run_reason=text)
        return _cell(target, device, runtime, "?", checks=[CheckResult("load", "failed", text)])
    r = ack.result
    p95, rss = float(r.get("p95_ms", 0.0)), float(r.get("rss_mb", 0.0))
    lat_b, rss_b = float(budgets["p95_latency_ms"]), float(budgets["peak_rss_mb"])
    checks = [
        CheckResult("load", "passed", f"{r.get('artifact')} on {r.get('backend')}",
                    {"load_ms": round(float(r.get("load_s", 0.0)) * 1000.0, 1)}),
        CheckResult("parity", "not run", _NO_PARITY),
        CheckResult("latency", "passed" if p95 <= lat_b else "failed",
                    f"p95 {p95} ms {'<=' if p95 <= lat_b else '>'} budget {lat_b} ms over "
                    f"{r.get('iterations')} batch-1 calls on the device",
                    {"latency_p50_ms": r.get("p50_ms"), "latency_p95_ms": p95,
                     "latency_budget_ms": lat_b}),
        CheckResult("memory", "passed" if rss <= rss_b else "failed",
                    f"agent process RSS {rss} MB {'<=' if rss <= rss_b else '>'} budget {rss_b} MB",
                    {"peak_rss_mb": rss, "rss_budget_mb": rss_b}),
        CheckResult("cache", "not run", "the benchmark command does not exercise the cache"),
    ]  # fmt: skip
    env = {"device": device, "backend": r.get("backend")}
    return _cell(target, device, runtime, str(r.get("package", "?")), checks=checks,
                 environment=env)  # fmt: skip


def run_fleet_cells(spec: MatrixSpec, targets: list[str]) -> list[CellResult]:
    """Benchmark every online device of each target, once per runtime."""
    runtimes = {t: spec.runtimes_for(t) for t in targets}
    if not spec.broker_url or not spec.command_key:
        why = "the fleet executor needs --broker-url and --command-key (the fleet's signing key)"
        return [_cell(t, "*", r, "-", not_run_reason=why) for t in targets for r in runtimes[t]]
    try:
        session = FleetSession(spec.broker_url, spec.broker_username, spec.broker_password)
    except ImportError:
        why = "paho-mqtt is not installed: pip install 'edgefleet[agent]'"
        return [_cell(t, "*", r, "-", not_run_reason=why) for t in targets for r in runtimes[t]]
    except OSError as e:
        why = f"cannot reach the broker {spec.broker_url}: {e}"
        return [_cell(t, "*", r, "-", not_run_reason=why) for t in targets for r in runtimes[t]]
    from edgefleet.sdk import load_private_key

    key = load_private_key(Path(spec.command_key))
    out: list[CellResult] = []
    try:
        try:
            devices = session.discover(spec.fleet_wait_s)
        except TimeoutError as e:
            why = f"broker {spec.broker_url}: {e}"
            return [_cell(t, "*", r, "-", not_run_reason=why) for t in targets for r in runtimes[t]]
        pending: list[tuple[str, str, str, str]] = []  # (target, device, runtime, command id)
        for t in targets:
            mine = sorted(
                d for d, inv in devices.items()
                if inv.profile == t and (not spec.fleet_devices or d in spec.fleet_devices)
            )  # fmt: skip
            if not mine:
                why = f"no online device reports profile {t}"
                out += [_cell(t, "*", r, "-", not_run_reason=why) for r in runtimes[t]]
            for d in mine:
                for r in runtimes[t]:
                    cmd = p.sign_command(
                        p.BenchmarkCommand(**p.command_fields(d, ttl_s=spec.timeout_s),
                                           iterations=spec.latency_runs, backend=r), key,
                    )  # fmt: skip
                    session.send(cmd)
                    pending.append((t, d, r, cmd.command_id))
        deadline = time.monotonic() + spec.timeout_s
        while time.monotonic() < deadline and any(
            session.result_of(c) is None for *_, c in pending
        ):
            time.sleep(0.05)
        for t, d, r, c in pending:
            out.append(_from_ack(t, d, r, session.result_of(c), spec.budgets_for(t)))
    finally:
        session.close()
    return out
