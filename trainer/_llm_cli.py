"""``edgefleet train tiny_llama``: the causal-LM branch of the train command (a table of
every export with its verification figures and whether the gate shipped it)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["train_llm"]


def train_llm(
    recipe: str, out: Path, key: Path | None, version: str | None, quiet: bool, console: Console
) -> None:
    from edgefleet.sdk import EdgefleetError

    from ._llm_recipe import load_llm_recipe
    from ._llm_run import run_llm_recipe

    try:
        rec = load_llm_recipe(recipe)
        if version:
            rec = rec.model_validate({**rec.model_dump(), "version": version})
        if key is None:
            console.print("[yellow]warning: no signing key (--key); the package is unsigned")
        elif not key.is_file():
            raise typer.BadParameter(f"expected a private key file, {key} does not exist")
        result = run_llm_recipe(rec, out, signing_key=key, quiet=quiet)
    except (EdgefleetError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    table = Table(title=f"{rec.name} {rec.version} (reference perplexity "
                  f"{result.reference_perplexity:.3f})")  # fmt: skip
    for col in ("artifact", "bytes", "next-token agr.", "greedy match", "perplexity", "status"):
        table.add_column(col)
    for r in result.exports:
        s = r.scores

        def f(k: str, s: dict = s) -> str:
            return f"{s[k]:.4f}" if k in s else "-"

        status = "shipped" if r.shipped else (f"FAILED: {r.error[:50]}" if r.error else "rejected")
        table.add_row(r.name, str(r.size or "-"), f("next_token_agreement"), f("greedy_match"),
                      f("perplexity"), status)  # fmt: skip
    Console().print(table)
    typer.echo(f"package: {result.package}")
