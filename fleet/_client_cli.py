"""``edgefleet fleet models|devices|rollouts|tokens|audit|login``: the operator's commands.

They speak only the HTTP API through :class:`FleetClient` (httpx), so they run on a laptop
with ``edgefleet[client]``. URL and token: ``--url``/``--token``, else ``EDGEFLEET_URL`` /
``EDGEFLEET_TOKEN``, else the config file ``edgefleet fleet login`` writes. Every command
takes ``--json`` (one JSON document on stdout, for scripts).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ._client import ACTIONS, FINAL_STATUSES, FleetApiError, FleetClient, save_client_config

__all__ = ["register"]

Url = Annotated[str | None, typer.Option("--url", help="Fleet URL (else EDGEFLEET_URL).")]
Token = Annotated[str | None, typer.Option("--token", help="API token (else EDGEFLEET_TOKEN).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

models_app = typer.Typer(no_args_is_help=True, help="Model packages in the registry.")
devices_app = typer.Typer(no_args_is_help=True, help="Devices: list, show, tag, decommission.")
rollouts_app = typer.Typer(no_args_is_help=True, help="Rollouts: create, act, show, watch.")
tokens_app = typer.Typer(no_args_is_help=True, help="API tokens over the API (admin role).")
out = Console()


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
    app.add_typer(devices_app, name="devices")
    app.add_typer(rollouts_app, name="rollouts")
    app.add_typer(tokens_app, name="tokens")
    app.command("audit")(audit)
    app.command("login")(login)


def _client(url: str | None, token: str | None) -> FleetClient:
    try:
        return FleetClient(url, token)
    except FleetApiError as e:
        _fail(e)


def _fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(2)


def _emit(data: Any) -> None:
    def plain(v: Any) -> Any:
        if hasattr(v, "model_dump"):
            return v.model_dump(mode="json")
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    sys.stdout.write(json.dumps(plain(data), default=str) + "\n")


def _run(url, token, fn):
    client = _client(url, token)
    try:
        return fn(client)
    except FleetApiError as e:
        _fail(e)
    finally:
        client.close()


def _ts(v: datetime | float | None) -> str:
    if v is None:
        return ""
    if isinstance(v, int | float):
        v = datetime.fromtimestamp(v).astimezone()
    return v.astimezone().strftime("%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------------- login, audit


def login(
    url: Annotated[str, typer.Option("--url", help="Fleet URL, e.g. http://fleet:8700")],
    token: Annotated[str, typer.Option("--token", help="API token (eft_...)")],
    config: Annotated[Path | None, typer.Option(help="Config file (default per user).")] = None,
) -> None:
    """Check the token against the fleet and save URL + token to the config file (0600)."""
    me = _run(url, token, lambda c: c.whoami())
    path = save_client_config(url, token, config)
    typer.echo(f"logged in to {url} as token {me['id']} ({me['role']}); saved to {path}")


def audit(
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
    limit: Annotated[int, typer.Option(help="Newest N entries.")] = 50,
    target: Annotated[str | None, typer.Option(help="rollout|model|device|token")] = None,
    target_id: Annotated[str | None, typer.Option(help="e.g. a rollout id")] = None,
) -> None:
    """Who did what to which rollout, model, device or token."""
    page = _run(url, token, lambda c: c.audit(limit=limit, target_type=target, target_id=target_id))
    if as_json:
        return _emit(page)
    t = Table("id", "when", "who", "role", "action", "target")
    for e in page.items:
        t.add_row(
            str(e.id),
            _ts(e.at),
            e.actor_id or "(hidden)",
            e.actor_role,
            e.action,
            f"{e.target_type} {e.target_id}",
        )
    out.print(t)


# ---------------------------------------------------------------------- models


@models_app.command("list")
def models_list(url: Url = None, token: Token = None, as_json: Json = False) -> None:
    """Registered model versions."""
    models = _run(url, token, lambda c: c.models())
    if as_json:
        return _emit(models)
    t = Table("model", "task", "signed by", "artifacts", "size", "uploaded")
    for m in models:
        arts = ", ".join(f"{a.get('format')}/{a.get('precision')}" for a in m.artifacts)
        t.add_row(
            m.ref, m.task, m.signed_by or "", arts, f"{m.size / 1024:.1f} KiB", _ts(m.created_at)
        )
    out.print(t)


@models_app.command("upload")
def models_upload(
    package: Annotated[Path, typer.Argument(help="A signed .efpkg")],
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Upload a package; the fleet checks its signature and every artifact hash."""
    mv = _run(url, token, lambda c: c.upload(package))
    if as_json:
        return _emit(mv)
    typer.echo(f"uploaded {mv.ref} (digest {mv.digest[:12]}, {mv.size} bytes)")


@models_app.command("show")
def models_show(
    model: Annotated[str, typer.Argument(help="name@version")],
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """One model version with its artifacts."""
    name, _, version = model.partition("@")
    if not version:
        _fail(FleetApiError(f"expected name@version, got {model!r}"))
    mv = _run(url, token, lambda c: c.model(name, version))
    if as_json:
        return _emit(mv)
    out.print(
        f"[b]{mv.ref}[/b]  task {mv.task or '-'}  signed by {mv.signed_by}  digest {mv.digest}"
    )
    t = Table("artifact", "format", "precision", "size", "targets")
    for a in mv.artifacts:
        t.add_row(
            str(a.get("name")),
            str(a.get("format")),
            str(a.get("precision")),
            str(a.get("size")),
            ", ".join(a.get("targets") or []),
        )
    out.print(t)


# ---------------------------------------------------------------------- devices


@devices_app.command("list")
def devices_list(
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
    search: Annotated[str, typer.Option("--search", "-q", help="Part of the device id.")] = "",
    profile: Annotated[str | None, typer.Option(help="Hardware profile.")] = None,
    tag: Annotated[str | None, typer.Option(help="Devices with this tag.")] = None,
    online: Annotated[bool | None, typer.Option("--online/--offline", help="Online state.")] = None,
    version: Annotated[str | None, typer.Option(help="Active model name@version.")] = None,
    state: Annotated[str | None, typer.Option(help="State in the latest rollout.")] = None,
    offset: int = 0,
    limit: Annotated[int, typer.Option(help="Page size (max 500).")] = 50,
) -> None:
    """Devices, filtered and paged on the server."""
    page = _run(
        url,
        token,
        lambda c: c.search_devices(
            search,
            profile=profile,
            tag=tag,
            online=online,
            version=version,
            state=state,
            offset=offset,
            limit=limit,
        ),
    )
    if as_json:
        return _emit(page)
    t = Table(
        "id",
        "online",
        "profile",
        "tags",
        "active",
        "deployment",
        "last seen",
        title=f"{len(page.items)} of {page.total} devices (offset {page.offset})",
    )
    for d in page.items:
        t.add_row(
            d.id,
            "[green]online[/]" if d.online else "[dim]offline[/]",
            d.profile or "",
            ", ".join(d.tags),
            d.active_model or "",
            d.get("deployment_state") or "",
            _ts(d.last_seen),
        )
    out.print(t)


@devices_app.command("show")
def devices_show(
    device_id: str, url: Url = None, token: Token = None, as_json: Json = False
) -> None:
    """Inventory, slots, maintenance windows and deployment history of one device."""
    d = _run(url, token, lambda c: c.device(device_id))
    if as_json:
        return _emit(d)
    inv = d.inventory
    out.print(
        f"[b]{d.id}[/b]  {'[green]online[/]' if d.online else 'offline'}  "
        f"profile {d.profile}  agent {d.agent_version}  last seen {_ts(d.last_seen)}"
    )
    out.print(f"slots: A={d.slot_a} B={d.slot_b} active={d.active_slot} ({d.active_model})")
    out.print(
        f"tags: {', '.join(d.tags) or '-'}   runtimes: "
        f"{', '.join(f'{k} {v}' for k, v in (inv.get('runtimes') or {}).items()) or '-'}"
    )
    for w in d.maintenance_windows:
        out.print(f"maintenance window: '{w['cron']}' for {w['duration_s']} s ({w['timezone']})")
    t = Table("rollout", "model", "wave", "state", "reason", "updated", title="deployments")
    for h in d.deployments:
        t.add_row(
            f"#{h.rollout_id} {h.rollout_name}",
            h.model,
            str(h.wave + 1),
            h.state,
            h.detail,
            _ts(h.updated_at),
        )
    out.print(t)


@devices_app.command("tag")
def devices_tag(
    device_id: str,
    add: Annotated[list[str] | None, typer.Option("--add", help="Tag to add.")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="Tag to remove.")] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Add or remove operator tags (tags the device reports itself stay)."""

    def go(c: FleetClient):
        tags = set(c.device(device_id).tags) | set(add or [])
        return c.set_tags(device_id, tags - set(remove or []))

    d = _run(url, token, go)
    if as_json:
        return _emit(d)
    typer.echo(f"{d.id}: tags {', '.join(d.tags) or '(none)'}")


@devices_app.command("windows")
def devices_windows(
    device_id: str,
    window: Annotated[
        list[str] | None,
        typer.Option(
            "--window", help="'CRON;DURATION_S[;TZ]', e.g. '0 2 * * *;3600;Europe/Berlin'"
        ),
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Set (or, without --window, clear) the device's maintenance windows."""
    windows = []
    for w in window or []:
        parts = w.split(";")
        if len(parts) not in (2, 3) or not parts[1].strip().isdigit():
            _fail(FleetApiError(f"expected 'CRON;DURATION_S[;TZ]', got {w!r}"))
        windows.append(
            {
                "cron": parts[0],
                "duration_s": int(parts[1]),
                "timezone": parts[2] if len(parts) == 3 else "UTC",
            }
        )
    d = _run(url, token, lambda c: c.set_maintenance_windows(device_id, windows))
    if as_json:
        return _emit(d)
    typer.echo(f"{d.id}: {len(d.maintenance_windows)} maintenance window(s)")


@devices_app.command("decommission")
def devices_decommission(
    device_id: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Revoke the device's credentials; it is ignored from now on (admin)."""
    if not yes:
        typer.confirm(f"Decommission {device_id}? Its credentials are revoked", abort=True)
    d = _run(url, token, lambda c: c.decommission(device_id))
    if as_json:
        return _emit(d)
    typer.echo(f"decommissioned {d.id}")


# ---------------------------------------------------------------------- rollouts


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
def rollouts_create(
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
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Create a rollout (DRAFT unless --start or --start-at)."""
    mname, _, version = model.partition("@")
    if not version:
        _fail(FleetApiError(f"--model: expected name@version, got {model!r}"))
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
    ro = _run(url, token, lambda c: c.create_rollout(body))
    if as_json:
        return _emit(ro)
    when = f", starts {_ts(ro.start_at)}" if ro.start_at else ""
    typer.echo(
        f"rollout {ro.id} {ro.status}: {ro.device_count} devices in {ro.wave_count} waves{when}"
    )


def _action_command(action: str):
    def cmd(
        rollout_id: int,
        reason: Annotated[str, typer.Option(help="Why (kept in the event log).")] = "",
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
        url: Url = None,
        token: Token = None,
        as_json: Json = False,
    ) -> None:
        if action in ("abort", "rollback") and not yes and not as_json:
            typer.confirm(f"{action.capitalize()} rollout {rollout_id}?", abort=True)
        ro = _run(url, token, lambda c: c.act(rollout_id, action, reason or f"{action} from CLI"))
        if as_json:
            return _emit(ro)
        typer.echo(f"rollout {ro.id}: {ro.status} ({ro.reason})")

    cmd.__doc__ = f"{action.capitalize()} a rollout."
    return cmd


for _action in ACTIONS:
    rollouts_app.command(_action)(_action_command(_action))


@rollouts_app.command("list")
def rollouts_list(url: Url = None, token: Token = None, as_json: Json = False) -> None:
    """Rollouts, newest first."""
    ros = _run(url, token, lambda c: c.rollouts())
    if as_json:
        return _emit(ros)
    t = Table("id", "name", "model", "status", "wave", "devices", "reason")
    for r in ros:
        t.add_row(
            str(r.id),
            r.name,
            r.model,
            r.status,
            f"{r.current_wave + 1}/{r.wave_count}",
            str(r.device_count),
            r.reason,
        )
    out.print(t)


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
def rollouts_show(
    rollout_id: int, url: Url = None, token: Token = None, as_json: Json = False
) -> None:
    """Status, waves, gates, per-device states and the event log."""
    ro = _run(url, token, lambda c: c.rollout(rollout_id))
    if as_json:
        return _emit(ro)
    out.print(_view(ro))


@rollouts_app.command("watch")
def rollouts_watch(
    rollout_id: int,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 0.0,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Live view of waves and gates until the rollout ends (COMPLETED: exit 0; ABORTED or
    ROLLED_BACK: exit 1). With --json: one line per change of status, wave or progress."""
    client = _client(url, token)
    deadline = time.monotonic() + timeout if timeout > 0 else float("inf")
    last = None
    try:
        ro = client.rollout(rollout_id)
        live = None if as_json else Live(_view(ro), console=out, refresh_per_second=4)
        if live:
            live.start()
        try:
            while True:
                key = (ro.status, ro.current_wave, tuple((w.active, w.failed) for w in ro.waves))
                if as_json and key != last:
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


# ---------------------------------------------------------------------- tokens


@tokens_app.command("list")
def tokens_list(url: Url = None, token: Token = None, as_json: Json = False) -> None:
    """API tokens (ids and roles, never secrets)."""
    toks = _run(url, token, lambda c: c.tokens())
    if as_json:
        return _emit(toks)
    t = Table("id", "name", "role", "created", "revoked")
    for k in toks:
        t.add_row(k.id, k.name, k.role, _ts(k.created_at), "yes" if k.revoked else "")
    out.print(t)


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option("--role", "-r", help="viewer, operator or admin")],
    name: Annotated[str, typer.Option(help="A label.")] = "",
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Create a token; it is printed once."""
    new = _run(url, token, lambda c: c.create_token(role, name))
    if as_json:
        return _emit({"token": new, "id": new.split("_")[1], "role": role})
    typer.echo(new)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: str, url: Url = None, token: Token = None, as_json: Json = False
) -> None:
    """Revoke a token by id."""
    _run(url, token, lambda c: c.revoke_token(token_id))
    if as_json:
        return _emit({"revoked": token_id})
    typer.echo(f"revoked {token_id}")
