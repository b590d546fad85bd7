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
import sys

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="edgefleet",
    help="Edge inference SDK, trainer, device agent, fleet service and HIL matrix.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# (name, module, extra to install, help). Names prefixed with "=" are commands merged into
# the root from that module (``edgefleet train``, ``edgefleet demo``); the others are groups.
# Only the module a command line needs is imported, so ``edgefleet agent ...`` never pays
# for the trainer's torch or the fleet's FastAPI.
_GROUPS: list[tuple[str | None, str, str, str]] = [
    ("sdk", "edgefleet.sdk._cli", "edgefleet", "Inspect, run and benchmark model packages."),
    ("keys", "edgefleet.sdk._keys_cli", "edgefleet", "Ed25519 signing keys."),
    ("=train", "edgefleet.trainer._cli", "edgefleet[trainer]", "Train and compress a model."),
    (
        "package",
        "edgefleet.trainer._import_cli",
        "edgefleet[onnxruntime]",
        "Import an existing .onnx/.tflite model: quantize, verify, gate, sign.",
    ),  # fmt: skip
    ("agent", "edgefleet.device_agents._cli", "edgefleet[agent]", "The device agent."),
    ("fleet", "edgefleet.fleet._cli", "edgefleet[fleet]", "The fleet service."),
    ("hil", "edgefleet.hardware._cli", "edgefleet", "Hardware targets and the HIL matrix."),
    ("=demo", "edgefleet.demo._cli", "edgefleet[all]", "Run the whole system end to end."),
]


def _missing(name: str, extra: str, err: Exception, help_text: str) -> None:
    """Mount ``name`` as one command that takes any arguments and says which extra to
    install: a stub *group* made ``edgefleet fleet serve`` answer "No such command
    'serve'" instead."""

    @app.command(
        name,
        help=f"{help_text} (unavailable: pip install '{extra}')",
        add_help_option=False,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def _unavailable() -> None:
        typer.echo(f"edgefleet {name}: not installed here ({err}); pip install '{extra}'", err=True)
        raise typer.Exit(2)


def _placeholder(name: str, help_text: str) -> None:
    """List a component in --help without importing it."""
    if name.startswith("="):
        app.command(name[1:], help=help_text, add_help_option=False)(lambda: None)
    else:
        app.add_typer(typer.Typer(), name=name, help=help_text)


def _register(wanted: str | None = "*") -> None:
    """Mount the component ``wanted`` names ("*": all of them; None: placeholders only).
    Each call redefines the command set, so calling it again is safe."""
    app.registered_commands.clear()
    app.registered_groups.clear()
    for name, module, extra, help_text in _GROUPS:
        bare = name.lstrip("=")
        if wanted != "*" and wanted != bare:
            _placeholder(name, help_text)
            continue
        try:
            sub = importlib.import_module(module).app
        except ImportError as e:
            # A missing optional dependency, or one too old to have a name we import.
            _missing(bare, extra, e, help_text)
            continue
        if name.startswith("="):
            app.registered_commands.extend(sub.registered_commands)
            app.registered_groups.extend(sub.registered_groups)
        else:
            app.add_typer(sub, name=name, help=help_text)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    level = logging.DEBUG if verbose else os.environ.get("EDGEFLEET_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    known = {n.lstrip("=") for n, *_ in _GROUPS}
    _register(words[0] if words and words[0] in known else None)
    app()
