"""``edgefleet package import``: an existing .onnx/.tflite model -> a verified, gated,
signed package. Only typer/stdlib at module level; no torch anywhere on this path."""

from __future__ import annotations

import json
from pathlib import Path

import typer

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False)


@app.callback()
def _group() -> None:
    """Model packages from existing model files."""


@app.command("import")
def import_(
    model: Path = typer.Argument(..., help="The .onnx or .tflite file."),
    eval_data: Path = typer.Option(..., "--eval", help=".npz: one array per input (+ labels)."),
    out: Path = typer.Option(..., "--out", "-o", help="Package directory or .efpkg file."),
    calib: Path | None = typer.Option(None, "--calib", help=".npz calibration inputs (ONNX)."),
    key: Path | None = typer.Option(None, "--key", "-k", help="Ed25519 private key to sign."),
    name: str | None = typer.Option(None, "--name", help="Package name (default: file stem)."),
    version: str = typer.Option("1.0.0", "--version"),
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="cosine, accuracy, top1_agreement, max_abs_error (default: "
        "accuracy with labels, else cosine).",
    ),  # fmt: skip
    direction: str = typer.Option("higher", "--direction", help="higher or lower is better."),
    floor: float | None = typer.Option(None, "--floor", help="Absolute floor of the metric."),
    max_drop: float | None = typer.Option(None, "--max-drop", help="Largest loss vs original."),
    labels: str = typer.Option("labels", "--labels", help="Key of the labels in --eval."),
    int4: bool = typer.Option(False, "--int4", help="Also try int4 weight-only (ONNX)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Quantize (ONNX), verify against the original on --eval with the named metric, gate
    (failing candidates are listed as rejected, not shipped), and sign."""
    from edgefleet.sdk import EdgefleetError, MetricSpec, load_private_key

    from ._import import ImportOptions, import_model
    from ._onnx_quant import OnnxQuantOptions

    try:
        gate = None
        if metric is not None or floor is not None or max_drop is not None:
            if floor is None and max_drop is None:
                floor = 0.99 if (metric or "cosine") == "cosine" else None
            gate = MetricSpec(name=metric or "cosine", direction=direction, floor=floor,
                              max_drop=max_drop)  # fmt: skip
        opts = ImportOptions(
            name=name, version=version, metric=gate, labels=labels,
            quantize=OnnxQuantOptions(int4=int4),
        )  # fmt: skip
        res = import_model(
            model, eval_data=eval_data, out=out, calib=calib,
            signing_key=load_private_key(key) if key else None, options=opts,
        )  # fmt: skip
    except (EdgefleetError, OSError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    summary = {
        "package": str(res.package),
        "metric": res.metric.model_dump(mode="json"),
        "shipped": res.shipped,
        "rejected": res.rejected,
    }
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(f"wrote {res.package}")
    for n, v in res.shipped.items():
        typer.echo(f"  shipped  {n}: {res.metric.name}={v:.4g}")
    for n, v in res.rejected.items():
        typer.echo(f"  rejected {n}: {res.metric.name}={v:.4g}")
