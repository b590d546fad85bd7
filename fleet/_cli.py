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


def _need_server(cmd: str) -> None:
    """The client commands need httpx only; these need the server stack of the fleet extra."""
    try:
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        typer.echo(
            f"edgefleet fleet {cmd}: not installed here ({e}); pip install 'edgefleet[fleet]'",
            err=True,
        )
        raise typer.Exit(2) from None


def _service(start: bool = False):
    _need_server("token")
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

    _need_server("serve")
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
        token = service.tokens.create(role, name)
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
    for t in service.tokens.list():
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
        service.tokens.revoke(token_id)
    except FleetError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    typer.echo(f"revoked {token_id}")


@app.command("broker-config")
def broker_config(
    tls: bool = typer.Option(False, "--tls", help="Generate a CA and server certificate."),
    client_certs: bool = typer.Option(
        False, "--client-certs", help="With --tls: a certificate per provisioned device, required."
    ),
    host: list[str] = typer.Option(
        None, "--host", help="Name or IP devices use to reach the broker (repeat; TLS SANs)."
    ),
    device_port: int = typer.Option(0, help="Device listener (default 1883, 8883 with TLS)."),
    fleet_port: int = typer.Option(0, help="Fleet listener (default 1884, 8884 with TLS)."),
    fleet_bind: str = typer.Option("127.0.0.1", help="Address of the fleet listener."),
) -> None:
    """Write Mosquitto password, ACL files and mosquitto.conf for all provisioned devices plus
    the fleet's own user; prints the fleet's MQTT password once and the settings to use."""
    import socket

    from ._broker_config import (
        BrokerConfig,
        provisioned_ids,
        render_mosquitto_conf,
        write_fleet_password_file,
    )
    from ._mosquitto import write_atomic
    from ._tls import ensure_ca, issue_certificate

    if client_certs and not tls:
        typer.echo("error: --client-certs needs --tls", err=True)
        raise typer.Exit(2)
    service = _service()
    try:
        password = service.devices.broker_credentials()
        s = service.settings
        mdir = (s.data_dir / "mqtt").resolve()
        write_fleet_password_file(mdir, s.mqtt_client_id)
        files = None
        if tls:
            hosts = list(dict.fromkeys([*(host or []), "localhost", "127.0.0.1", socket.getfqdn()]))
            ca = ensure_ca(mdir / "tls")
            files = issue_certificate(ca, mdir / "tls", "server", hosts=hosts)
            if client_certs:
                for dev in provisioned_ids(service.ctx.ReadSession):
                    issue_certificate(ca, mdir / "tls" / "devices", dev)
        cfg = BrokerConfig(
            mqtt_dir=mdir,
            max_payload_bytes=s.max_payload_bytes,
            device_port=device_port,
            fleet_port=fleet_port,
            fleet_bind=fleet_bind,
            tls=files,
            client_certs=client_certs,
        )
        conf = mdir / "mosquitto.conf"
        write_atomic(conf, render_mosquitto_conf(cfg), 0o644)
    finally:
        service.ctx.engine.dispose()
    scheme = "mqtts" if tls else "mqtt"
    typer.echo(f"fleet MQTT user: {s.mqtt_client_id}\nfleet MQTT password: {password}")
    typer.echo(f"broker: mosquitto -c {conf}")
    typer.echo(
        f"fleet:  EDGEFLEET_FLEET_BROKER_URL={scheme}://{fleet_bind}:{cfg.fleet_listen_port}"
        f" EDGEFLEET_FLEET_MQTT_USERNAME={s.mqtt_client_id}"
    )
    typer.echo(f"devices: EDGEFLEET_AGENT_BROKER_URL={scheme}://HOST:{cfg.device_listen_port}")
    if files is not None:
        typer.echo(f"        EDGEFLEET_FLEET_MQTT_TLS_CA / EDGEFLEET_AGENT_TLS_CA={files.ca_cert}")
        if client_certs:
            typer.echo(f"        per-device certificates in {mdir / 'tls' / 'devices'}")
