"""The rollout engine: a pure state machine (no I/O, no clock, no MQTT).

The service feeds it a snapshot (rollout, per-device progress, gate telemetry, ``now``)
and applies the returned :class:`Decision`: which devices get a deploy command, which
timed out, whether the rollout advances, halts (PAUSED / ROLLED_BACK) or completes.
A wave advances only when all its devices are terminal, enough succeeded, the soak time
passed and the telemetry gates hold, so a failing canary stops the rollout before any
device of the next wave receives anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ._errors import InvalidTransitionError
from ._rollout_spec import RolloutSpec, TargetSpec, WaveSize

__all__ = [
    "STATUSES",
    "IN_FLIGHT",
    "FAILED_STATES",
    "TERMINAL_STATES",
    "WaveSize",
    "RolloutSpec",
    "TargetSpec",
    "DeviceProgress",
    "GateInputs",
    "RolloutSnapshot",
    "Decision",
    "plan_waves",
    "step",
    "apply_action",
]

STATUSES = ("DRAFT", "RUNNING", "PAUSED", "COMPLETED", "ABORTED", "ROLLED_BACK")
# Device states inside a rollout: PENDING (not sent yet), SENT, then the agent's states.
IN_FLIGHT = frozenset({"SENT", "QUEUED", "DOWNLOADING", "VERIFYING", "STAGED", "ACTIVATING"})
DOWNLOADING = frozenset({"SENT", "QUEUED", "DOWNLOADING"})
FAILED_STATES = frozenset({"FAILED", "ROLLED_BACK", "REJECTED", "CANCELED", "TIMED_OUT"})
TERMINAL_STATES = FAILED_STATES | {"ACTIVE"}

_ACTIONS: dict[str, dict[str, str]] = {
    "start": {"DRAFT": "RUNNING"},
    "pause": {"RUNNING": "PAUSED"},
    "resume": {"PAUSED": "RUNNING"},
    "abort": {"DRAFT": "ABORTED", "RUNNING": "ABORTED", "PAUSED": "ABORTED"},
    "rollback": {"RUNNING": "ROLLED_BACK", "PAUSED": "ROLLED_BACK", "COMPLETED": "ROLLED_BACK"},
}


def plan_waves(device_ids: list[str], spec: RolloutSpec) -> list[list[str]]:
    """Split targets (sorted, deterministic) into waves; the remainder is the last wave."""
    ids = sorted(set(device_ids))
    if not ids:
        return []
    if spec.strategy == "all_at_once":
        return [ids]
    sizes = [spec.canary] if spec.strategy == "canary" else list(spec.waves)
    waves: list[list[str]] = []
    i = 0
    for ws in sizes:
        if i >= len(ids):
            break
        n = ws.size(len(ids))
        waves.append(ids[i : i + n])
        i += n
    if i < len(ids):
        waves.append(ids[i:])
    return waves


@dataclass(frozen=True)
class DeviceProgress:
    """One target device as the engine sees it: its wave and its latest deployment state."""

    device_id: str
    wave: int
    state: str
    updated_at: float
    waiting: bool = False  # STAGED, holding for a maintenance window: never "stuck"


@dataclass(frozen=True)
class GateInputs:
    """Telemetry of the new version (on this rollout's devices) vs the previous version."""

    new_p95_ms: float | None = None
    old_p95_ms: float | None = None
    new_error_rate: float | None = None
    old_error_rate: float | None = None
    new_calls: int = 0
    new_ttft_p95_ms: float | None = None
    old_ttft_p95_ms: float | None = None
    new_decode_tps: float | None = None
    old_decode_tps: float | None = None


@dataclass(frozen=True)
class RolloutSnapshot:
    """The stored rollout as one engine tick reads it."""

    status: str
    spec: RolloutSpec
    wave_count: int
    current_wave: int
    soak_started_at: float | None = None
    override_wave: int = -1


@dataclass
class Decision:
    """What one engine tick decided, for the caller to apply: devices to send the deploy
    command to, devices that timed out, a new status and its reason, the wave and soak
    changes, devices to roll back and the gate figures to record."""

    dispatch: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    status: str | None = None
    reason: str = ""
    current_wave: int | None = None
    soak_started_at: float | None = None
    clear_soak: bool = False
    rollback_devices: list[str] = field(default_factory=list)
    gates: dict = field(default_factory=dict)


def apply_action(status: str, action: str) -> str:
    """New status for a manual action, or InvalidTransitionError naming what is allowed."""
    table = _ACTIONS.get(action)
    if table is None:
        raise InvalidTransitionError(f"unknown action {action!r}; expected one of {list(_ACTIONS)}")
    if status not in table:
        raise InvalidTransitionError(
            f"cannot {action} a rollout in state {status}; allowed from {sorted(table)}"
        )
    return table[status]


def evaluate_gates(spec: RolloutSpec, g: GateInputs) -> tuple[bool, dict, str]:
    values = {
        "new_p95_ms": g.new_p95_ms,
        "old_p95_ms": g.old_p95_ms,
        "new_error_rate": g.new_error_rate,
        "old_error_rate": g.old_error_rate,
        "new_calls": g.new_calls,
    }
    gen = _generation_values(g)
    values.update(gen)
    gated = any(
        x is not None
        for x in (
            spec.max_p95_regression,
            spec.max_error_rate_increase,
            spec.max_ttft_p95_regression,
            spec.max_decode_tps_regression,
        )
    )
    if gated and g.new_calls < spec.min_gate_calls:
        return False, values, f"waiting for telemetry ({g.new_calls}/{spec.min_gate_calls} calls)"
    if spec.max_p95_regression is not None and g.new_p95_ms is not None and g.old_p95_ms:
        limit = g.old_p95_ms * (1 + spec.max_p95_regression)
        values["p95_limit_ms"] = limit
        if g.new_p95_ms > limit:
            return (
                False,
                values,
                (
                    f"p95 latency gate failed: {g.new_p95_ms:.2f} ms > {limit:.2f} ms "
                    f"(previous {g.old_p95_ms:.2f} ms + {spec.max_p95_regression:.0%})"
                ),
            )
    if spec.max_error_rate_increase is not None and g.new_error_rate is not None:
        old = g.old_error_rate or 0.0
        values["error_rate_limit"] = old + spec.max_error_rate_increase
        if g.new_error_rate - old > spec.max_error_rate_increase:
            return (
                False,
                values,
                (
                    f"error rate gate failed: {g.new_error_rate:.2%} vs previous {old:.2%} "
                    f"(allowed increase {spec.max_error_rate_increase:.2%})"
                ),
            )
    why = _generation_gates(spec, g, values)
    if why:
        return False, values, why
    return True, values, "gates passed"


def _generation_values(g: GateInputs) -> dict:
    """Generation figures for the rollout's gate record (only those measured)."""
    named = {
        "new_ttft_p95_ms": g.new_ttft_p95_ms,
        "old_ttft_p95_ms": g.old_ttft_p95_ms,
        "new_decode_tps": g.new_decode_tps,
        "old_decode_tps": g.old_decode_tps,
    }
    return {k: v for k, v in named.items() if v is not None}


def _generation_gates(spec: RolloutSpec, g: GateInputs, values: dict) -> str:
    """The generative gates (TTFT p95, decode tokens/s) against the previous version; the
    reason when one fails, else ""."""
    if spec.max_ttft_p95_regression is not None and g.new_ttft_p95_ms is not None:
        if g.old_ttft_p95_ms:
            limit = g.old_ttft_p95_ms * (1 + spec.max_ttft_p95_regression)
            values["ttft_p95_limit_ms"] = limit
            if g.new_ttft_p95_ms > limit:
                return (
                    f"TTFT p95 gate failed: {g.new_ttft_p95_ms:.2f} ms > {limit:.2f} ms "
                    f"(previous {g.old_ttft_p95_ms:.2f} ms + {spec.max_ttft_p95_regression:.0%})"
                )
    if spec.max_decode_tps_regression is not None and g.new_decode_tps is not None:
        if g.old_decode_tps:
            floor = g.old_decode_tps * (1 - spec.max_decode_tps_regression)
            values["decode_tps_floor"] = floor
            if g.new_decode_tps < floor:
                return (
                    f"decode tokens/s gate failed: {g.new_decode_tps:.1f} < {floor:.1f} "
                    f"(previous {g.old_decode_tps:.1f} - {spec.max_decode_tps_regression:.0%})"
                )
    return ""


def _halt(spec: RolloutSpec, devices: list[DeviceProgress], reason: str) -> Decision:
    if spec.on_failure == "rollback":
        touched = [d.device_id for d in devices if d.state != "PENDING"]
        return Decision(status="ROLLED_BACK", reason=reason, rollback_devices=touched)
    return Decision(status="PAUSED", reason=reason)


def step(
    snap: RolloutSnapshot,
    devices: list[DeviceProgress],
    gates: GateInputs,
    now: float,
) -> Decision:
    """One engine tick for a RUNNING rollout; anything else is left alone."""
    spec = snap.spec
    if snap.status != "RUNNING":
        return Decision()
    if snap.wave_count == 0:
        return Decision(status="COMPLETED", reason="no devices matched the target")
    wave = snap.current_wave
    # A device stuck in one state past the timeout counts as failed.
    timed_out = [
        d.device_id
        for d in devices
        if d.wave <= wave
        and d.state in IN_FLIGHT
        and not d.waiting
        and now - d.updated_at > spec.stuck_timeout_s
    ]
    tset = set(timed_out)

    def state(d: DeviceProgress) -> str:
        return "TIMED_OUT" if d.device_id in tset else d.state

    members = [d for d in devices if d.wave == wave]
    n = len(members)
    failed = [d for d in members if state(d) in FAILED_STATES]
    active = [d for d in members if state(d) == "ACTIVE"]
    if failed and len(failed) > spec.failure_threshold * n and wave > snap.override_wave:
        names = ", ".join(f"{d.device_id}={state(d)}" for d in failed[:5])
        dec = _halt(
            spec,
            devices,
            f"wave {wave + 1}: {len(failed)}/{n} devices failed ({names}), over the failure "
            f"threshold {spec.failure_threshold:.0%}",
        )
        dec.timed_out = timed_out
        return dec
    dec = Decision(timed_out=timed_out)
    downloading = sum(1 for d in devices if state(d) in DOWNLOADING)
    budget = max(0, spec.max_concurrent_downloads - downloading)
    dec.dispatch = [d.device_id for d in members if d.state == "PENDING"][:budget]
    if any(state(d) not in TERMINAL_STATES for d in members):
        return dec
    need = math.ceil(spec.success_threshold * n)
    if len(active) < need and wave > snap.override_wave:
        halted = _halt(
            spec,
            devices,
            f"wave {wave + 1}: only {len(active)}/{n} devices ACTIVE, "
            f"success threshold {spec.success_threshold:.0%} needs {need}",
        )
        halted.timed_out = timed_out
        return halted
    # Wave done: soak, then gates.
    if snap.soak_started_at is None:
        dec.soak_started_at = now
        if spec.soak_s > 0:
            return dec
        soak_start = now
    else:
        soak_start = snap.soak_started_at
    ok, values, why = evaluate_gates(spec, gates)
    dec.gates = values
    if now - soak_start < spec.soak_s:
        return dec
    if not ok:
        if why.startswith("waiting"):
            return dec
        halted = _halt(spec, devices, f"wave {wave + 1}: {why}")
        halted.gates = values
        return halted
    if wave + 1 >= snap.wave_count:
        dec.status = "COMPLETED"
        dec.reason = f"all {snap.wave_count} waves succeeded ({why})"
        return dec
    dec.current_wave = wave + 1
    dec.clear_soak = True
    dec.soak_started_at = None
    dec.reason = f"wave {wave + 1} succeeded ({len(active)}/{n} ACTIVE, {why}); next wave"
    nxt = [d.device_id for d in devices if d.wave == wave + 1 and d.state == "PENDING"]
    dec.dispatch = nxt[: max(0, spec.max_concurrent_downloads - downloading)]
    return dec
