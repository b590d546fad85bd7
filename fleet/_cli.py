"""``edgefleet fleet``: serve the fleet, manage API tokens, emit Mosquitto auth files.

Only typer/rich/stdlib at module level; the server stack is imported inside commands.
"""

from __future__ import annotations

import typer

from . import _client_cli

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="The fleet service, and operating it over its API.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens (roles viewer, operator, admin).")
app.add_typer(token_app, name="token")
_client_cli.register(app)  # models, devices, rollouts, tokens, audit, login (httpx only)


def _service(start: bool = False):
    from ._service import FleetService
    from ._settings import FleetSettings

    return FleetService(FleetSettings())


@app.command("serve")
def serve(
    host: str = typer.Option(None, help="Bind address (default EDGEFLEET_FLEET_HOST)."),
    port: int = typer.Option(None, help="Port (default EDGEFLEET_FLEET_PORT)."),
) -> None:
    """Run the fleet: HTTP API + dashboard, MQTT ingestion, rollout engine.

    Without EDGEFLEET_FLEET_BROKER_URL an embedded amqtt broker is started.
    """
    import os

    import uvicorn

    if host:
        os.environ["EDGEFLEET_FLEET_HOST"] = host
    if port:
        os.environ["EDGEFLEET_FLEET_PORT"] = str(port)
    from ._api import create_app

    service = _service()
    s = service.settings
    typer.echo(f"edgefleet fleet on {s.base_url} (dashboard {s.base_url}/ui/index.html)")
    uvicorn.run(create_app(service, manage_lifecycle=True), host=s.host, port=s.port)


@token_app.command("create")
def token_create(
    role: str = typer.Option(..., "--role", "-r", help="viewer, operator or admin"),
    name: str = typer.Option("", help="A label for the token."),
) -> None:
    """Create an API token; it is printed once and stored only as an Argon2 hash."""
    from ._errors import FleetError

    service = _service()
    try:
        token = service.create_token(role, name)
    except FleetError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    finally:
        service.ctx.engine.dispose()
    typer.echo(token)


@token_app.command("list")
def token_list() -> None:
    """List tokens (ids, roles; never secrets)."""
    from rich.console import Console
    from rich.table import Table

    service = _service()
    table = Table("id", "name", "role", "created", "revoked")
    for t in service.list_tokens():
        table.add_row(
            t.id, t.name, t.role, t.created_at.isoformat(timespec="seconds"), str(t.revoked)
        )
    service.ctx.engine.dispose()
    Console().print(table)


@token_app.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke a token by id."""
    from ._errors import FleetError

    service = _service()
    try:
        service.revoke_token(token_id)
    except FleetError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    typer.echo(f"revoked {token_id}")


@app.command("broker-config")
def broker_config() -> None:
    """Write Mosquitto password and ACL files for all provisioned devices plus the fleet's
    own user; prints the fleet's MQTT password once and the mosquitto.conf lines."""
    service = _service()
    password = service.devices.broker_credentials()
    s = service.settings
    mdir = (s.data_dir / "mqtt").resolve()
    typer.echo(f"fleet MQTT user: {s.mqtt_client_id}\nfleet MQTT password: {password}")
    typer.echo("mosquitto.conf:")
    typer.echo(
        f"  allow_anonymous false\n  password_file {mdir / 'passwd'}\n  acl_file {mdir / 'acl'}"
    )
