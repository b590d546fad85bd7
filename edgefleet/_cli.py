"""The one ``edgefleet`` CLI: a Typer app with a subcommand group per component.

Each component exposes a Typer app in its ``_cli`` module. Those modules import only
typer/rich/stdlib at module level, so ``edgefleet --help`` is fast and works on a device
install without the fleet or trainer extras; a component whose dependencies are missing
is listed with the extra to install.
"""

from __future__ import annotations

import importlib
import logging
import os

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="edgefleet",
    help="Edge inference SDK, trainer, device agent, fleet service and HIL matrix.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# (group name, module, extra to install, help). A group of None merges the module's
# commands into the root (e.g. ``edgefleet train``, ``edgefleet demo``).
_GROUPS: list[tuple[str | None, str, str, str]] = [
    ("sdk", "edgefleet.sdk._cli", "edgefleet", "Inspect, run and benchmark model packages."),
    ("keys", "edgefleet.sdk._keys_cli", "edgefleet", "Ed25519 signing keys."),
    (None, "edgefleet.trainer._cli", "edgefleet[trainer]", "Train and compress models."),
    ("agent", "edgefleet.device_agents._cli", "edgefleet[agent]", "The device agent."),
    ("fleet", "edgefleet.fleet._cli", "edgefleet[fleet]", "The fleet service."),
    ("hil", "edgefleet.hardware._cli", "edgefleet", "Hardware targets and the HIL matrix."),
    (None, "edgefleet._demo_cli", "edgefleet[all]", "The end-to-end demo."),
]


def _missing(name: str, extra: str, err: Exception) -> typer.Typer:
    stub = typer.Typer(help=f"(unavailable: pip install '{extra}')")

    @stub.callback(invoke_without_command=True)
    def _unavailable() -> None:
        typer.echo(f"edgefleet {name}: not installed here ({err}); pip install '{extra}'", err=True)
        raise typer.Exit(2)

    return stub


def _register() -> None:
    for name, module, extra, help_text in _GROUPS:
        try:
            sub = importlib.import_module(module).app
        except ModuleNotFoundError as e:
            # Only a missing optional dependency (or a component not built yet) lands here.
            if name is None:
                continue
            sub = _missing(name, extra, e)
        if name is None:
            for cmd in sub.registered_commands:
                app.registered_commands.append(cmd)
            for grp in sub.registered_groups:
                app.registered_groups.append(grp)
        else:
            app.add_typer(sub, name=name, help=help_text)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    level = logging.DEBUG if verbose else os.environ.get("EDGEFLEET_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    _register()
    app()
