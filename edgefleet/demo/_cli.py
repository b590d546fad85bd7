"""``edgefleet demo``: the one-command tour of the whole system (merged at the CLI root).

Only typer/rich/stdlib at module level; the demo (torch, fastapi, ...) loads inside.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["app"]

log = logging.getLogger(__name__)

app = typer.Typer(pretty_exceptions_show_locals=False)


class RichUi:
    """Steps as spinners with elapsed time on stderr; stdout stays for the JSON line."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task = None

    def __enter__(self) -> RichUi:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def step(self, text: str) -> None:
        if self._task is not None:
            self.progress.remove_task(self._task)
        self._task = self.progress.add_task(text)

    @contextmanager
    def paused(self) -> Iterator[None]:
        self.progress.stop()
        try:
            yield
        finally:
            self.progress.start()

    def stream(self, text: str) -> None:
        self.console.file.write(text)
        self.console.file.flush()

    def done(self, text: str) -> None:
        if self._task is not None:
            self.progress.remove_task(self._task)
            self._task = None
        self.console.print(f"[green]✓[/green] {text}")

    def rollout(self, ro: dict) -> None:
        if self._task is None:
            return
        w = ro["current_wave"]
        names = ["canary"] + [f"wave {i}" for i in range(1, ro["wave_count"])]
        states = Counter(d["state"] for d in ro["devices"] if d["wave"] == w)
        desc = ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
        label = names[w] if w < len(names) else f"wave {w}"
        self.progress.update(
            self._task,
            description=f"rollout {ro['id']} {ro['status']}: {label} ({w + 1}/{ro['wave_count']})"
            f" {desc}",
        )


def _table(demo) -> Table:
    t = Table(title=f"edgefleet demo — dashboard {demo.fleet.url}/  (Ctrl-C to stop)")
    from ._board_views import local_models

    gen = demo.opts.generative  # the boards' apps also have the LM write
    cols = ("device", "profile", "model", "runtime", "predictions", "accuracy", "cache")
    for col in cols + (("LM answers",) if gen else ()):
        t.add_column(col)
    models = local_models(demo.devices)
    for a in demo.devices.agents:
        st = demo.apps.stats[a.device_id]
        cache = a.active.cache.stats() if a.active.cache is not None else None
        hr = cache.hit_rate if cache is not None else None
        row = [
            a.device_id,
            a.profile_name or "?",
            models.get(a.device_id) or "-",
            a.active.loaded.info.backend if a.active.loaded is not None else "-",
            str(st.predictions),
            f"{st.accuracy:.1%}" if st.accuracy is not None else "-",
            f"{hr:.0%}" if hr is not None else "-",
        ]
        t.add_row(*row, *((str(st.answers),) if gen else ()))
    return t


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _serve_forever(demo, console: Console) -> None:
    from rich.live import Live

    with Live(_table(demo), console=console, refresh_per_second=2) as live:
        while True:
            time.sleep(1.0)
            live.update(_table(demo))


@app.command("demo")
def demo(
    out: Path = typer.Option(
        Path("demo-out"),
        "--out",
        help="Work directory (keys, package, fleet data, device stores); never the repository.",
    ),
    headless: bool = typer.Option(False, "--headless", help="Run to completion and exit."),
    as_json: bool = typer.Option(False, "--json", help="Last stdout line: one JSON summary."),
    broker: str = typer.Option(
        "",
        "--broker",
        help="mqtt://host:port of a real broker (default: the fleet's embedded amqtt broker).",
    ),
    db: str = typer.Option(
        "", "--db", help="Database URL, e.g. postgresql+psycopg://... (default: SQLite in --out)."
    ),
    port: int = typer.Option(8700, "--port", help="Fleet HTTP port (0: any free port)."),
    per_profile: int = typer.Option(
        2, "--per-profile", min=1, max=50, help="Simulated devices per hardware profile."
    ),
    epochs: int = typer.Option(3, "--epochs", min=1, max=100, help="Training epochs."),
    formats: str = typer.Option("onnx,tflite", "--formats", help="Export formats: onnx,tflite,pte"),
    retrain: bool = typer.Option(False, "--retrain", help="Train again even if --out has one."),
    package: Path | None = typer.Option(
        None, "--package", help="A signed digits .efpkg to use instead of training."
    ),
    package_key: Path | None = typer.Option(None, "--package-key", help="Its public key."),
    timeout_s: float = typer.Option(300.0, "--timeout", help="Seconds allowed for a rollout."),
    generative: bool = typer.Option(
        False,
        "--generative",
        help="Then also the tiny LM: train (cached in --out), roll out in gated waves, stream "
        "one board's answer over SSE.",
    ),
    prompt: str = typer.Option(
        "the small robot", "--prompt", help="With --generative: the text a board goes on with."
    ),
) -> None:
    """Train, sign, start the fleet and simulated boards, roll out, run cached inference."""
    from edgefleet.sdk import EdgefleetError

    from ._orchestrator import Demo, DemoOptions

    console = Console(stderr=True, soft_wrap=True)  # unwrapped lines stay grep-able in logs
    # amqtt logs every probe and disconnect at WARNING/ERROR, torch/torchao and the TFLite
    # converter chat during export; the demo shows its own status lines instead.
    logging.getLogger("amqtt").setLevel(logging.CRITICAL)
    # The demo picks the embedded broker on purpose; its production warning is not for here.
    logging.getLogger("edgefleet.fleet._broker").setLevel(logging.ERROR)
    for noisy in ("torch", "torchao"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    fmts = tuple(f.strip() for f in formats.split(",") if f.strip())
    bad = [f for f in fmts if f not in ("onnx", "tflite", "pte")]
    if bad or not fmts:
        console.print(f"[red]error:[/red] --formats expects onnx,tflite,pte; got {formats!r}")
        raise typer.Exit(2)
    # The parameters are named after DemoOptions' fields; these three are converted.
    opts = DemoOptions.from_values(
        {**locals(), "out": out.resolve(), "formats": fmts, "quiet_training": headless}
    )  # quiet_training: the trainer's own progress bars when someone watches
    # `kill` shuts down as cleanly as Ctrl-C; and Ctrl-C works even when started from a
    # shell that left SIGINT ignored (background jobs of non-interactive shells).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _interrupt)
    code = 0
    summary: dict = {}
    with RichUi(console) as ui:
        d = Demo(opts, ui)
        try:
            summary = d.run()
        except KeyboardInterrupt:
            console.print("[yellow]interrupted; shutting down[/yellow]")
            code = 130
        except (EdgefleetError, TimeoutError, OSError) as e:
            console.print(f"[red]demo failed:[/red] {e}")
            code = 1
        except Exception:  # a bug: show it, but still stop what was started
            console.print_exception(show_locals=False)
            code = 1
        if code or headless:
            ui.step("shutting down")
            d.close()
    if code == 0 and not headless:
        try:  # Ctrl-C may come at any point from here on: always shut down
            console.print(f"\n[bold]Dashboard:[/bold] {d.fleet.url}/  (paste the token there)")
            console.print(f"[bold]Admin API token:[/bold] {d.fleet.admin_token}")
            console.print(f"[bold]API:[/bold] {d.fleet.url}/docs   [dim]Ctrl-C stops it all[/dim]")
            console.print(_next_steps(d.fleet.url, d.fleet.admin_token, opts.out))
            if opts.generative:
                console.print(_ask_board(d.devices.agents[0]))
            _serve_forever(d, console)
        except KeyboardInterrupt:
            console.print("[yellow]stopping the demo[/yellow]")
        finally:
            d.close()
    if summary and code == 0:
        if as_json:
            print(json.dumps(summary), flush=True)
        else:
            _print_summary(console, summary)
    raise typer.Exit(code)


def _ask_board(agent) -> str:
    """The command that streams from a board's OpenAI-compatible endpoint, as the demo did
    (``/v1/chat/completions`` takes ``messages`` the same way)."""
    body = '{"prompt": "the red drone", "max_tokens": 40, "stream": true}'
    return (
        f"\n[bold]Ask {agent.device_id}[/bold] (any OpenAI client works offline too):\n"
        f"  curl -N {agent.endpoint.address}/v1/completions "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )


def _print_summary(console: Console, summary: dict) -> None:
    t = Table(title="demo summary", show_header=False)
    for k, v in summary.items():
        t.add_row(k, str(v))
    console.print(t)


def _next_steps(url: str, token: str, out: Path) -> str:
    """The operator's next commands (the fleet CLI), printed under the dashboard URL."""
    key = out / "keys" / "demo.key"
    return (
        "\n[bold]Next steps[/bold] (another terminal):\n"
        f"  edgefleet fleet login --url {url} --token {token}\n"
        "  edgefleet fleet devices list\n"
        f"  edgefleet train digits --out v2 --key {key} --version 1.1.0 --quiet\n"
        "  edgefleet fleet models upload v2/digits-1.1.0.efpkg\n"
        "  edgefleet fleet rollouts create -m digits@1.1.0 --tag demo --waves 1,50% "
        "--max-p95-regression 0.5 --start\n"
        "  edgefleet fleet rollouts watch <id>"
    )
