"""``edgefleet fleet rollouts ...``: create, act on, show and watch rollouts (a live rich
view of waves, gates, devices and events until the rollout ends)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ._api_client import ACTIONS, FINAL_STATUSES, FleetApiError
from ._client_cli import Remote, _emit, _fail, _model_ref, _ts, out, remote_command

__all__ = ["rollouts_app"]

rollouts_app = typer.Typer(no_args_is_help=True, help="Rollouts: create, act, show, watch.")


def _wave_sizes(text: str) -> list[dict]:
    sizes = []
    for part in (s.strip() for s in text.split(",")):
        if not part:
            continue
        try:
            sizes.append(
                {"percent": float(part[:-1])} if part.endswith("%") else {"count": int(part)}
            )
        except ValueError:
            _fail(
                FleetApiError(f"wave sizes: expected counts or percents like 1,50%, got {part!r}")
            )
    return sizes


@rollouts_app.command("create")
@remote_command
def rollouts_create(
    remote: Remote,
    model: Annotated[str, typer.Option("--model", "-m", help="name@version")],
    name: Annotated[str | None, typer.Option(help="Rollout name (default: the model).")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Target devices with ALL tags.")] = None,
    profile: Annotated[str | None, typer.Option(help="Target a hardware profile.")] = None,
    device: Annotated[list[str] | None, typer.Option(help="Target device ids.")] = None,
    strategy: Annotated[str, typer.Option(help="all_at_once | canary | waves")] = "waves",
    waves: Annotated[str, typer.Option(help="Canary/wave sizes, e.g. '1,50%'.")] = "1,50%",
    soak: Annotated[float, typer.Option(help="Soak seconds after each wave.")] = 0.0,
    max_p95_regression: Annotated[float | None, typer.Option(help="e.g. 0.5 = +50%")] = None,
    max_error_rate_increase: Annotated[float | None, typer.Option(help="e.g. 0.02")] = None,
    min_gate_calls: Annotated[int, typer.Option(help="Calls before gates judge.")] = 1,
    on_failure: Annotated[str, typer.Option(help="pause | rollback")] = "pause",
    health_window: Annotated[float, typer.Option(help="Device health window, s.")] = 10.0,
    start: Annotated[bool, typer.Option("--start", help="Start right away.")] = False,
    start_at: Annotated[
        datetime | None,
        typer.Option(help="Scheduled start, ISO time with zone (2026-01-01T02:00:00+00:00)."),
    ] = None,
) -> None:
    """Create a rollout (DRAFT unless --start or --start-at)."""
    mname, version = _model_ref(model, "--model: ")
    target: dict[str, Any] = {}
    if tag:
        target["tags"] = list(tag)
    if profile:
        target["profile"] = profile
    if device:
        target["device_ids"] = list(device)
    sizes = _wave_sizes(waves)
    spec: dict[str, Any] = {
        "strategy": strategy,
        "soak_s": soak,
        "on_failure": on_failure,
        "health_window_s": health_window,
        "min_gate_calls": min_gate_calls,
    }
    if strategy == "canary" and sizes:
        spec["canary"] = sizes[0]
    elif strategy == "waves":
        spec["waves"] = sizes
    if max_p95_regression is not None:
        spec["max_p95_regression"] = max_p95_regression
    if max_error_rate_increase is not None:
        spec["max_error_rate_increase"] = max_error_rate_increase
    if start_at is not None and start_at.tzinfo is None:
        _fail(FleetApiError("--start-at needs a time zone, e.g. 2026-01-01T02:00:00+00:00"))
    body = {
        "name": name or model,
        "model": mname,
        "version": version,
        "target": target,
        "spec": spec,
        "start": start,
    }
    if start_at is not None:
        body["start_at"] = start_at.isoformat()
    ro = remote.run(lambda c: c.create_rollout(body))
    when = f", starts {_ts(ro.start_at)}" if ro.start_at else ""
    waves = f"{ro.device_count} devices in {ro.wave_count} waves{when}"
    remote.reply(ro, f"rollout {ro.id} {ro.status}: {waves}")


def _action_command(action: str):
    def cmd(
        remote: Remote,
        rollout_id: int,
        reason: Annotated[str, typer.Option(help="Why (kept in the event log).")] = "",
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    ) -> None:
        if action in ("abort", "rollback") and not yes and not remote.as_json:
            typer.confirm(f"{action.capitalize()} rollout {rollout_id}?", abort=True)
        ro = remote.run(lambda c: c.act(rollout_id, action, reason or f"{action} from CLI"))
        remote.reply(ro, f"rollout {ro.id}: {ro.status} ({ro.reason})")

    cmd.__doc__ = f"{action.capitalize()} a rollout."
    return remote_command(cmd)


for _action in ACTIONS:
    rollouts_app.command(_action)(_action_command(_action))


@rollouts_app.command("list")
@remote_command
def rollouts_list(remote: Remote) -> None:
    """Rollouts, newest first."""
    ros = remote.run(lambda c: c.rollouts())
    remote.table(
        ros,
        ("id", "name", "model", "status", "wave", "devices", "reason"),
        (
            (str(r.id), r.name, r.model, r.status, f"{r.current_wave + 1}/{r.wave_count}",
             str(r.device_count), r.reason)
            for r in ros
        ),
    )  # fmt: skip


def _view(ro) -> Group:
    """The rollout as rich renderables: header, a bar per wave, gates, latest events."""
    head = Text.assemble(
        (f"rollout {ro.id} ", "bold"),
        f"{ro.name} -> {ro.model}  ",
        (ro.status, "bold"),
        f"  {ro.reason}",
    )
    waves = Table("wave", "progress", "active", "failed", "in flight", box=None)
    for w in ro.waves:
        busy = w.size - w.active - w.failed - w.states.get("PENDING", 0)
        n = 30
        ok = round(n * w.active / w.size) if w.size else 0
        bad = round(n * w.failed / w.size) if w.size else 0
        mid = min(n - ok - bad, round(n * busy / w.size) if w.size else 0)
        bar = Text("█" * ok, "green") + Text("█" * bad, "red") + Text("█" * mid, "blue")
        bar += Text("░" * (n - ok - bad - mid), "dim")
        marker = "▶ " if w.index == ro.current_wave and ro.status == "RUNNING" else "  "
        waves.add_row(
            f"{marker}{w.index + 1}", bar, f"{w.active}/{w.size}", str(w.failed), str(max(busy, 0))
        )
    gates = {k: v for k, v in ro.gates.items() if v is not None}
    gate_text = Text(
        "gates: "
        + "  ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in gates.items()
        )
        if gates
        else "gates: (none yet)"
    )
    events = Table("when", "from", "to", "reason", "by", box=None, title="events")
    for e in ro.events[-6:]:
        events.add_row(_ts(e.at), e.from_status, e.to_status, e.reason, e.actor or "")
    notable = [d for d in ro.devices if d.state not in ("ACTIVE", "PENDING")][:8]
    devs = Table("device", "wave", "state", "reason", box=None, title="devices not active")
    for d in notable:
        devs.add_row(d.device_id, str(d.wave + 1), d.state, d.detail)
    parts = [head, waves, gate_text, events]
    if notable:
        parts.append(devs)
    return Group(*parts)


@rollouts_app.command("show")
@remote_command
def rollouts_show(remote: Remote, rollout_id: int) -> None:
    """Status, waves, gates, per-device states and the event log."""
    ro = remote.run(lambda c: c.rollout(rollout_id))
    if remote.as_json:
        return _emit(ro)
    out.print(_view(ro))


@rollouts_app.command("watch")
@remote_command
def rollouts_watch(
    remote: Remote,
    rollout_id: int,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 0.0,
) -> None:
    """Live view of waves and gates until the rollout ends (COMPLETED: exit 0; ABORTED or
    ROLLED_BACK: exit 1). With --json: one line per change of status, wave or progress."""
    client = remote.client()
    deadline = time.monotonic() + timeout if timeout > 0 else float("inf")
    last = None
    try:
        ro = client.rollout(rollout_id)
        live = None if remote.as_json else Live(_view(ro), console=out, refresh_per_second=4)
        if live:
            live.start()
        try:
            while True:
                key = (ro.status, ro.current_wave, tuple((w.active, w.failed) for w in ro.waves))
                if remote.as_json and key != last:
                    _emit(
                        {
                            "id": ro.id,
                            "status": ro.status,
                            "reason": ro.reason,
                            "current_wave": ro.current_wave,
                            "gates": ro.gates,
                            "waves": [w.model_dump() for w in ro.waves],
                        }
                    )
                last = key
                if live:
                    live.update(_view(ro))
                if ro.status in FINAL_STATUSES or time.monotonic() > deadline:
                    break
                time.sleep(interval)
                ro = client.rollout(rollout_id)
        finally:
            if live:
                live.stop()
    except FleetApiError as e:
        _fail(e)
    finally:
        client.close()
    if ro.status not in FINAL_STATUSES:
        typer.echo(f"rollout {rollout_id} still {ro.status} after {timeout:.0f} s", err=True)
        raise typer.Exit(3)
    raise typer.Exit(0 if ro.status == "COMPLETED" else 1)
