"""``edgefleet agent``: run the device agent, provision a package, simulate a fleet.

Only typer/rich/stdlib at module level; the agent loads inside the commands.
"""

from __future__ import annotations

import inspect
import logging
import sys
import time
from pathlib import Path

import typer
from rich.console import Console

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False)
_err = Console(stderr=True)


def _fail(e: Exception) -> None:
    _err.print(f"[red]error:[/red] {e}")
    raise typer.Exit(2)


def _run(**values: object) -> None:
    """Run the agent until SIGTERM/SIGINT (what the systemd unit starts)."""
    from edgefleet.sdk import EdgefleetError

    from ._run_agent import run_from_options

    logging.getLogger("edgefleet").setLevel(
        min(logging.getLogger("edgefleet").getEffectiveLevel(), logging.INFO)
    )
    try:
        run_from_options(values)
    except EdgefleetError as e:
        _fail(e)


def _options_signature(fn) -> None:
    """Give ``fn`` the Typer parameters of RUN_OPTIONS (the lean argparse entry in
    ``__main__`` is built from the same table, so the two cannot drift)."""
    from ._run_agent import RUN_OPTIONS

    params = []
    for o in RUN_OPTIONS:
        kind = list[o.type] if o.many else o.type
        flags = [o.flag, o.short] if o.short else [o.flag]
        default = typer.Option(None, *flags, help=o.help)
        params.append(inspect.Parameter(o.dest, inspect.Parameter.KEYWORD_ONLY,
                                        default=default, annotation=kind | None))  # fmt: skip
    fn.__signature__ = inspect.Signature(params)
    fn.__annotations__ = {p.name: p.annotation for p in params}


_options_signature(_run)
app.command("run")(_run)


@app.command()
def install(
    package: Path = typer.Argument(..., help=".efpkg to make active (first provisioning)."),
    data_dir: Path = typer.Option(..., help="The agent's data directory."),
    package_key: list[Path] = typer.Option(None, help="Public key the package must be signed by."),
) -> None:
    """Provision a package into the store and activate it, without the fleet."""
    from edgefleet.sdk import EdgefleetError, TrustPolicy

    from ._store import ModelStore

    try:
        policy = TrustPolicy.device(*package_key) if package_key else TrustPolicy()
        info = ModelStore(data_dir / "store").install(package, policy)
    except EdgefleetError as e:
        _fail(e)
    typer.echo(f"active: {info.package_name} {info.package_version} in slot {info.slot}")


@app.command()
def simulate(
    count: int = typer.Option(10, "--count", "-n", min=1, max=100_000, help="Agents to run."),
    profile: str = typer.Option("raspberry-pi-4", help="Hardware profile they report."),
    broker: str = typer.Option("mqtt://127.0.0.1:1883", help="Broker URL."),
    data_dir: Path = typer.Option(Path("sim-agents"), help="One sub-directory per agent."),
    prefix: str = typer.Option("sim", help="Device ids are PREFIX-0000, PREFIX-0001, ..."),
    fleet_key: list[Path] = typer.Option(None, help="Fleet public key that signs commands."),
    device_token: str | None = typer.Option(None, help="Token for artifact downloads."),
    telemetry_interval: float = typer.Option(10.0, help="Seconds between samples."),
    smoke_test: bool = typer.Option(True, help="Run the golden smoke test on deploy."),
    duration: float | None = typer.Option(None, help="Stop after this many seconds."),
) -> None:
    """Run COUNT simulated agents in this process (one MQTT loop thread for all)."""
    from edgefleet.sdk import EdgefleetError
    from rich.progress import Progress

    from ._simulate import Simulation

    base = {
        "broker_url": broker,
        "profile": profile,
        "fleet_keys": list(fleet_key or []),
        "device_token": device_token,
        "telemetry_interval_s": telemetry_interval,
        "smoke_test": smoke_test,
    }
    try:
        sim = Simulation.numbered(count, data_dir, base, prefix=prefix).start()
    except (EdgefleetError, ValueError) as e:
        _fail(e)
    t0 = time.monotonic()
    with Progress(console=_err, transient=True) as progress:
        task = progress.add_task("agents online", total=count)
        while sim.online() < count and time.monotonic() - t0 < 120:
            progress.update(task, completed=sim.online())
            time.sleep(0.2)
    _err.print(f"{sim.online()}/{count} agents online in {time.monotonic() - t0:.1f}s")
    sys.stderr.flush()
    from ._run_agent import wait_for_signal

    wait_for_signal(duration)
    sim.stop()
