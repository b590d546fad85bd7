"""``edgefleet keys``: create the Ed25519 key pair that signs packages and commands."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True)


@app.command("new")
def new(
    out: Path = typer.Option(Path("keys"), "--out", "-o", help="Directory for the key pair."),
    name: str = typer.Option("edgefleet", help="File stem: NAME.key and NAME.pub."),
) -> None:
    """Write NAME.key (private, mode 0600) and NAME.pub; never overwrites."""
    from ._errors import EdgefleetError
    from ._signing import generate_keypair, key_id, load_public_key

    try:
        priv, pub = generate_keypair(out, name)
    except EdgefleetError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    kid = key_id(load_public_key(pub))
    typer.echo(f"private key: {priv}\npublic key:  {pub}\nkey id:      {kid}")
