"""``edgefleet hil``: target profiles, board detection and the hardware-in-loop matrix.

Only typer/rich/stdlib at module level; the matrix machinery is imported inside commands.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


def _split(values: list[str] | None) -> tuple[str, ...]:
    """``--targets a,b --targets c`` -> ("a", "b", "c")."""
    return tuple(v.strip() for raw in values or [] for v in raw.split(",") if v.strip())


def _fail(e: Exception) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {e}", markup=True, highlight=False)
    return typer.Exit(2)


@app.command("profiles")
def profiles() -> None:
    """List the bundled target profiles with their budgets and runtime order."""
    from edgefleet.hardware.profiles import list_profiles

    t = Table("name", "arch", "cores", "RAM MB", "accelerators", "runtimes (preferred first)",
              "max pkg MB", "p95 ms", "RSS MB")  # fmt: skip
    for p in list_profiles():
        b = p.budgets
        t.add_row(
            p.name, p.arch, str(p.cores), str(p.ram_mb),
            ", ".join(a.kind for a in p.accelerators) or "-", " > ".join(p.backends),
            f"{b.max_package_bytes / (1 << 20):.0f}", f"{b.p95_latency_ms:g}", str(b.peak_rss_mb),
        )  # fmt: skip
    console.print(t)


@app.command("detect")
def detect(
    root: Path = typer.Option(Path("/"), help="Read the board files under this root."),
    machine: str | None = typer.Option(
        None, help="Architecture the process runs [default: this one, for --root /]."
    ),
) -> None:
    """Detect which target profile this machine (or a recorded ROOT) is."""
    from edgefleet.hardware.profiles import ProfileError
    from edgefleet.hardware.profiles import detect as run_detect

    try:
        found = run_detect(root, machine)
    except ProfileError as e:
        raise _fail(e) from e
    exact = "" if found.exact else " (generic fallback)"
    console.print(f"{found.profile.name}{exact}: by {found.method} ({found.evidence})")
    if found.guess:
        console.print(f"guess: {found.guess}", highlight=False)


@app.command("prepare-emulator")
def prepare_emulator(
    cache: Path = typer.Option(..., "--cache", help="Directory for the arm64 root (reused)."),
    system_qemu: bool = typer.Option(
        False, help="Use the system's qemu-aarch64-static instead of fetching Debian 13's."
    ),
) -> None:
    """Build (or reuse) the emulated aarch64 userland: Debian arm64 .debs + aarch64 wheels."""
    from edgefleet.hardware.hil import HilError
    from edgefleet.hardware.hil import prepare_emulator as prepare

    try:
        with console.status("preparing the aarch64 emulator root") as status:
            emu = prepare(cache, lambda msg: status.update(msg), fetch_newer=not system_qemu)
    except HilError as e:
        raise _fail(e) from e
    info = emu.info()
    runs = ", ".join(f"{k} {v}" for k, v in info.get("runtimes", {}).items()) or "none"
    console.print(
        f"emulator ready in {emu.cache}: {info.get('qemu', 'qemu')} ({info.get('qemu_source')}), "
        f"python {info.get('python')}, numpy {info.get('numpy')}; runtimes that run: {runs}",
        highlight=False,
    )
    for why in info.get("not_run", {}).values():
        console.print(f"not run under emulation: {why}", highlight=False)
    if info.get("qemu_fetch_error"):
        console.print(f"no newer qemu: {info['qemu_fetch_error']}", highlight=False)


def _executors(values: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for v in values:
        target, sep, names = v.partition("=")
        if not sep or not names:
            raise typer.BadParameter(f"expected TARGET=EXECUTOR[+EXECUTOR], got {v!r}")
        out[target] = tuple(n for n in names.split("+") if n)
    return out


@app.command("run")
def run(
    out: Path = typer.Option(..., "--out", "-o", help="Directory for reports and cell logs."),
    package: list[Path] = typer.Option(None, "--package", "-p", help="Package(s) to test."),
    matrix: Path | None = typer.Option(None, "--matrix", help="Matrix TOML file."),
    targets: list[str] = typer.Option(None, "--targets", "-t", help="Profile names (a,b)."),
    runtimes: list[str] = typer.Option(None, "--runtimes", "-r", help="Backends (a,b)."),
    executor: list[str] = typer.Option(
        None, "--executor", "-e", help="TARGET=EXECUTOR[+EXECUTOR] (local/limited/emulated/fleet)."
    ),
    emulator_cache: Path | None = typer.Option(None, help="Prepared emulator directory."),
    latency_runs: int | None = typer.Option(
        None, min=1, help="Batch-1 calls timed per cell [default: 50]."
    ),
    timeout: float | None = typer.Option(
        None, min=1.0, help="Seconds per cell, x4 when emulated [default: 300]."
    ),
    trusted_key: list[Path] = typer.Option(None, help="Public key(s) to verify signatures."),
    broker_url: str = typer.Option("", help="Fleet executor: the fleet's MQTT broker URL."),
    command_key: Path | None = typer.Option(None, help="Fleet executor: command signing key."),
    fleet_device: list[str] = typer.Option(None, help="Fleet executor: only these device ids."),
) -> None:
    """Run the matrix; exit 1 if any cell failed or errored (not-run cells are listed)."""
    from edgefleet.hardware.hil import HilError, MatrixSpec, load_matrix, run_matrix
    from edgefleet.hardware.profiles import ProfileError
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    chosen = dict(
        packages=tuple(package or ()),
        targets=_split(targets),
        runtimes=_split(runtimes),
        executors=_executors(_split(executor)),
        emulator_cache=emulator_cache,
        trusted_keys=tuple(trusted_key or ()),
        broker_url=broker_url,
        command_key=command_key,
        fleet_devices=_split(fleet_device),
        latency_runs=latency_runs,
        timeout_s=timeout,
    )
    try:
        if matrix is not None:
            spec = load_matrix(matrix, **chosen)
        else:
            spec = MatrixSpec(**{k: v for k, v in chosen.items() if v})
        if matrix is None:
            spec.validate("command line")
    except (HilError, ProfileError, TypeError) as e:
        raise _fail(e) from e

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("cells", total=None)

        def progress(plan, i, total, res) -> None:
            name = f"{plan.target}/{plan.executor}/{plan.runtime}/{plan.package.name}"
            if res is None:
                bar.update(task, total=total, description=name)
            else:
                bar.update(task, completed=i + 1)

        try:
            result = run_matrix(spec, out, progress)
        except HilError as e:
            raise _fail(e) from e
    _summary(result, out)
    raise typer.Exit(0 if result.ok else 1)


def _summary(result, out: Path) -> None:
    from edgefleet.hardware.hil import cell_figures

    style = {"passed": "green", "failed": "red", "error": "red bold", "not run": "dim"}
    t = Table("cell", "result", "figures / reason")
    for c in result.cells:
        why = c.not_run_reason or "; ".join(
            f"{k.name}: {k.detail}" for k in c.checks if k.status in ("failed", "error")
        )
        t.add_row(c.id, f"[{style[c.status]}]{c.status}[/]", why or cell_figures(c))
    console.print(t)
    n = result.counts()
    console.print(
        f"{n['passed']} passed, {n['failed']} failed, {n['error']} errors, {n['not run']} not run"
        f" - reports in {out}/ (junit.xml, matrix.md, matrix.html, results.json)"
    )
