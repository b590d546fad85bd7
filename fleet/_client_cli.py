"""``edgefleet fleet models|devices|rollouts|tokens|audit|login``: the operator's commands
(``rollouts`` lives in ``_client_cli_rollouts``; the shared options and helpers are here:
``@remote_command`` gives a command --url, --token and --json as one :class:`Remote`).

They speak only the HTTP API through :class:`FleetClient` (httpx), so they run on a laptop
with ``edgefleet[client]``. URL and token: ``--url``/``--token``, else ``EDGEFLEET_URL`` /
``EDGEFLEET_TOKEN``, else the config file ``edgefleet fleet login`` writes. Every command
takes ``--json`` (one JSON document on stdout, for scripts).
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from ._api_client import FleetApiError, FleetClient, save_client_config

__all__ = ["register"]

T = TypeVar("T")

Url = Annotated[str | None, typer.Option("--url", help="Fleet URL (else EDGEFLEET_URL).")]
Token = Annotated[str | None, typer.Option("--token", help="API token (else EDGEFLEET_TOKEN).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
# The options every command taking a Remote has, after its own: (name, annotation, default).
_REMOTE_OPTIONS = (("url", Url, None), ("token", Token, None), ("as_json", Json, False))

models_app = typer.Typer(no_args_is_help=True, help="Model packages in the registry.")
devices_app = typer.Typer(no_args_is_help=True, help="Devices: list, show, tag, decommission.")
tokens_app = typer.Typer(no_args_is_help=True, help="API tokens over the API (admin role).")
out = Console()


def register(app: typer.Typer) -> None:
    from ._client_cli_rollouts import rollouts_app

    app.add_typer(models_app, name="models")
    app.add_typer(devices_app, name="devices")
    app.add_typer(rollouts_app, name="rollouts")
    app.add_typer(tokens_app, name="tokens")
    app.command("audit")(audit)
    app.command("login")(login)


def _fail(e: Exception) -> NoReturn:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(2)


def _model_ref(ref: str, option: str = "") -> tuple[str, str]:
    """``name@version`` as (name, version); exit 2 naming the expected form otherwise."""
    name, _, version = ref.partition("@")
    if not version:
        _fail(FleetApiError(f"{option}expected name@version, got {ref!r}"))
    return name, version


def _emit(data: Any) -> None:
    def plain(v: Any) -> Any:
        if hasattr(v, "model_dump"):
            return v.model_dump(mode="json")
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    sys.stdout.write(json.dumps(plain(data), default=str) + "\n")


@dataclass(frozen=True)
class Remote:
    """The fleet a command talks to (--url, --token) and how it answers (--json)."""

    url: str | None
    token: str | None
    as_json: bool = False

    def client(self) -> FleetClient:
        """A client for the fleet (the caller closes it); exit 2 if URL or token is missing."""
        try:
            return FleetClient(self.url, self.token)
        except FleetApiError as e:
            _fail(e)

    def run(self, fn: Callable[[FleetClient], T]) -> T:
        """``fn(client)`` on a fresh client; an API error exits 2 with its message."""
        client = self.client()
        try:
            return fn(client)
        except FleetApiError as e:
            _fail(e)
        finally:
            client.close()

    def reply(self, data: Any, text: str) -> None:
        """A command's short answer: ``data`` as JSON with --json, else the line ``text``."""
        if self.as_json:
            _emit(data)
        else:
            typer.echo(text)

    def table(
        self,
        data: Any,
        header: Sequence[str],
        rows: Iterable[Sequence[str]],
        title: str | None = None,
    ) -> None:
        """A listing: ``data`` as JSON with --json, else a table of ``rows`` under ``header``."""
        if self.as_json:
            return _emit(data)
        t = Table(*header, title=title)
        for row in rows:
            t.add_row(*row)
        out.print(t)


def remote_command(fn: Callable[..., None]) -> Callable[..., None]:
    """``fn(remote, ...)`` as a Typer command: its own parameters, then --url, --token and
    --json (declared once here), which reach ``fn`` as one :class:`Remote`."""
    own = list(inspect.signature(fn, eval_str=True).parameters.values())[1:]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=default)
        for name, kind, default in _REMOTE_OPTIONS
    ]

    @functools.wraps(fn)
    def command(*args: Any, url: str | None, token: str | None, as_json: bool, **kw: Any) -> None:
        return fn(Remote(url, token, as_json), *args, **kw)

    command.__signature__ = inspect.Signature(own + shared)  # what Typer reads
    return command


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
    me = Remote(url, token).run(lambda c: c.whoami())
    path = save_client_config(url, token, config)
    typer.echo(f"logged in to {url} as token {me['id']} ({me['role']}); saved to {path}")


@remote_command
def audit(
    remote: Remote,
    limit: Annotated[int, typer.Option(help="Newest N entries.")] = 50,
    target: Annotated[str | None, typer.Option(help="rollout|model|device|token")] = None,
    target_id: Annotated[str | None, typer.Option(help="e.g. a rollout id")] = None,
) -> None:
    """Who did what to which rollout, model, device or token."""
    page = remote.run(lambda c: c.audit(limit=limit, target_type=target, target_id=target_id))
    remote.table(
        page,
        ("id", "when", "who", "role", "action", "target"),
        (
            (str(e.id), _ts(e.at), e.actor_id or "(hidden)", e.actor_role, e.action,
             f"{e.target_type} {e.target_id}")
            for e in page.items
        ),
    )  # fmt: skip


# ---------------------------------------------------------------------- models


@models_app.command("list")
@remote_command
def models_list(remote: Remote) -> None:
    """Registered model versions."""
    models = remote.run(lambda c: c.models())
    remote.table(
        models,
        ("model", "task", "signed by", "artifacts", "size", "uploaded"),
        (
            (m.ref, m.task, m.signed_by or "",
             ", ".join(f"{a.get('format')}/{a.get('precision')}" for a in m.artifacts),
             f"{m.size / 1024:.1f} KiB", _ts(m.created_at))
            for m in models
        ),
    )  # fmt: skip


@models_app.command("upload")
@remote_command
def models_upload(
    remote: Remote,
    package: Annotated[Path, typer.Argument(help="A signed .efpkg")],
) -> None:
    """Upload a package; the fleet checks its signature and every artifact hash."""
    mv = remote.run(lambda c: c.upload(package))
    remote.reply(mv, f"uploaded {mv.ref} (digest {mv.digest[:12]}, {mv.size} bytes)")


@models_app.command("show")
@remote_command
def models_show(
    remote: Remote,
    model: Annotated[str, typer.Argument(help="name@version")],
) -> None:
    """One model version with its artifacts."""
    name, version = _model_ref(model)
    mv = remote.run(lambda c: c.model(name, version))
    if remote.as_json:
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
@remote_command
def devices_list(
    remote: Remote,
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
    page = remote.run(
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
    remote.table(
        page,
        ("id", "online", "profile", "tags", "active", "deployment", "last seen"),
        (
            (d.id, "[green]online[/]" if d.online else "[dim]offline[/]", d.profile or "",
             ", ".join(d.tags), d.active_model or "", d.get("deployment_state") or "",
             _ts(d.last_seen))
            for d in page.items
        ),
        title=f"{len(page.items)} of {page.total} devices (offset {page.offset})",
    )  # fmt: skip


@devices_app.command("show")
@remote_command
def devices_show(remote: Remote, device_id: str) -> None:
    """Inventory, slots, maintenance windows and deployment history of one device."""
    d = remote.run(lambda c: c.device(device_id))
    if remote.as_json:
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
    given = [("maintenance window", w) for w in d.maintenance_windows]
    own = [("declared by the device", w) for w in inv.get("maintenance_windows") or []]
    for label, w in given + own:
        out.print(f"{label}: '{w['cron']}' for {w['duration_s']} s ({w['timezone']})")
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
@remote_command
def devices_tag(
    remote: Remote,
    device_id: str,
    add: Annotated[list[str] | None, typer.Option("--add", help="Tag to add.")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="Tag to remove.")] = None,
) -> None:
    """Add or remove operator tags (tags the device reports itself stay)."""

    def go(c: FleetClient):
        tags = set(c.device(device_id).tags) | set(add or [])
        return c.set_tags(device_id, tags - set(remove or []))

    d = remote.run(go)
    remote.reply(d, f"{d.id}: tags {', '.join(d.tags) or '(none)'}")


@devices_app.command("windows")
@remote_command
def devices_windows(
    remote: Remote,
    device_id: str,
    window: Annotated[
        list[str] | None,
        typer.Option(
            "--window", help="'CRON;DURATION_S[;TZ]', e.g. '0 2 * * *;3600;Europe/Berlin'"
        ),
    ] = None,
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
    d = remote.run(lambda c: c.set_maintenance_windows(device_id, windows))
    remote.reply(d, f"{d.id}: {len(d.maintenance_windows)} maintenance window(s)")


@devices_app.command("decommission")
@remote_command
def devices_decommission(
    remote: Remote,
    device_id: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Revoke the device's credentials; it is ignored from now on (admin)."""
    if not yes:
        typer.confirm(f"Decommission {device_id}? Its credentials are revoked", abort=True)
    d = remote.run(lambda c: c.decommission(device_id))
    remote.reply(d, f"decommissioned {d.id}")


# ---------------------------------------------------------------------- tokens


@tokens_app.command("list")
@remote_command
def tokens_list(remote: Remote) -> None:
    """API tokens (ids and roles, never secrets)."""
    toks = remote.run(lambda c: c.tokens())
    remote.table(
        toks,
        ("id", "name", "role", "created", "revoked"),
        ((k.id, k.name, k.role, _ts(k.created_at), "yes" if k.revoked else "") for k in toks),
    )


@tokens_app.command("create")
@remote_command
def tokens_create(
    remote: Remote,
    role: Annotated[str, typer.Option("--role", "-r", help="viewer, operator or admin")],
    name: Annotated[str, typer.Option(help="A label.")] = "",
) -> None:
    """Create a token; it is printed once."""
    new = remote.run(lambda c: c.create_token(role, name))
    remote.reply({"token": new, "id": new.split("_")[1], "role": role}, new)


@tokens_app.command("revoke")
@remote_command
def tokens_revoke(remote: Remote, token_id: str) -> None:
    """Revoke a token by id."""
    remote.run(lambda c: c.revoke_token(token_id))
    remote.reply({"revoked": token_id}, f"revoked {token_id}")
