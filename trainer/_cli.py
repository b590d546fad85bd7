"""``edgefleet train RECIPE --out DIR``: run a recipe end to end into a signed package.

Only typer/rich/stdlib at module level; torch and the exporters load inside the command.
"""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True)

_DEFAULT_KEY = Path("keys/edgefleet.key")


@app.command("train")
def train(
    recipe: str = typer.Argument(
        ...,
        help="Recipe TOML file, or a built-in recipe name (digits, mobilenet_v2, tiny_llama).",
    ),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Output directory."),
    key: Path | None = typer.Option(
        None,
        "--key",
        "-k",
        help=f"Ed25519 private key (edgefleet keys new); default {_DEFAULT_KEY}",
    ),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Trained weights (e.g. edgefleet.trainer.ddp); skips training."
    ),
    version: str | None = typer.Option(None, "--version", help="Override the recipe version."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train, compress, export (ONNX, LiteRT, ExecuTorch), verify, package, sign, report."""
    from edgefleet.sdk import EdgefleetError
    from rich.console import Console
    from rich.table import Table

    from ._llm_recipe import is_llm_recipe
    from ._recipe import load_recipe
    from ._run import run_recipe

    console = Console(stderr=True)
    if is_llm_recipe(recipe):
        from ._llm_cli import train_llm

        train_llm(recipe, out, key if key is not None or not _DEFAULT_KEY.is_file() else
                  _DEFAULT_KEY, version, quiet, console)  # fmt: skip
        return
    try:
        rec = load_recipe(recipe)
        if version:
            rec = rec.model_validate({**rec.model_dump(), "version": version})
        if key is None and _DEFAULT_KEY.is_file():
            key = _DEFAULT_KEY
        if key is None:
            console.print("[yellow]warning: no signing key (--key); the package is unsigned")
        elif not key.is_file():
            raise typer.BadParameter(f"expected a private key file, {key} does not exist")
        result = run_recipe(rec, out, signing_key=key, quiet=quiet, checkpoint=checkpoint)
    except EdgefleetError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    except ValueError as e:  # pydantic re-validation of --version
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e

    table = Table(title=f"{result.name} {result.version}")
    for col in ("artifact", "size", result.metric.name, "p50 ms", "status"):
        table.add_column(col)
    for r in result.exports:
        m = r.metrics
        status = {"shipped": "ok", "failed": f"FAILED: {(r.error or '')[:60]}"}.get(
            r.status, f"rejected: {(r.reason or '')[:60]}"
        )
        table.add_row(
            r.name,
            str(r.size or "-"),
            f"{m.value:.4f}" if m and m.value is not None else "-",
            f"{m.latency_ms_p50:.3f}" if m and m.latency_ms_p50 is not None else "-",
            status,
        )
    Console().print(table)
    typer.echo(f"package: {result.package}")
    typer.echo(f"report:  {result.report}")
