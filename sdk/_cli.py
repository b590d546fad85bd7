"""``edgefleet sdk``: inspect, run and benchmark model packages from the shell.

Only typer/rich/stdlib at module level: numpy and the runtimes load inside the commands.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False)
_out = Console()
_err = Console(stderr=True)

_KEYS = typer.Option(
    None, "--trusted-key", "-k", help="Public key (.pub) to verify the signature against."
)
_REQUIRE = typer.Option(
    False, "--require-signature", help="Refuse unsigned packages (the device policy)."
)
_BACKEND = typer.Option(None, "--backend", "-b", help="Runtime (default: best available).")
_ARTIFACT = typer.Option(
    None,
    "--artifact",
    "-a",
    help="Artifact name (default: the automatic choice: passes the accuracy gate, profile's "
    "runtime preference, then precision). See `edgefleet sdk inspect`.",
)


@contextmanager
def _errors() -> Iterator[None]:
    """One clear line and a non-zero exit for anything the user can fix; no traceback."""
    from ._errors import EdgefleetError

    try:
        yield
    except EdgefleetError as e:
        _err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except (OSError, ValueError) as e:
        _err.print(
            f"[red]error:[/red] {type(e).__name__}: {escape(str(e))}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


def _policy(keys: list[Path] | None, require: bool):
    from ._package import TrustPolicy

    keys = keys or []
    return TrustPolicy.device(*keys) if require else TrustPolicy.workstation(*keys)


def _load(package: Path, backend: str | None, keys, require: bool, warmup: int = 1, artifact=None):
    from ._load import LoadOptions, load

    return load(
        package,
        backend=backend,
        options=LoadOptions(trust=_policy(keys, require), warmup=warmup, artifact=artifact),
    )


def _metric_text(manifest, artifact) -> str:
    """The artifact's measured figure by the metric's own name, and its gate verdict."""
    from ._select import gate_status

    passed, value = gate_status(manifest, artifact)
    m = artifact.metrics
    name = (manifest.metric.name if manifest.metric else None) or (m and m.metric)
    if value is None:
        if m is not None and m.accuracy is not None:  # schema-1 classifiers
            return f"accuracy={m.accuracy:.4g}"
        return "-" if passed is None else "not measured (fails gate)"
    text = f"{name}={value:.4g}"
    if m is not None and m.reference_value is not None:
        text += f" (ref {m.reference_value:.4g})"
    return text + ("" if passed is None else " pass" if passed else " FAIL")


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


@app.command()
def inspect(
    package: Path = typer.Argument(..., help="Package directory or .efpkg file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    trusted_key: list[Path] | None = _KEYS,
    require_signature: bool = _REQUIRE,
) -> None:
    """Manifest summary, artifacts (format, precision, size, sha256, metrics), signature."""
    with _errors():
        from ._package import open_package

        with open_package(package, _policy(trusted_key, require_signature)) as pkg:
            m = pkg.manifest
            info = {
                "name": m.name,
                "version": m.version,
                "task": m.task,
                "digest": pkg.digest,
                "signature": pkg.signature_state,
                "inputs": [s.describe() for s in m.inputs],
                "outputs": [s.describe() for s in m.outputs],
                "labels": m.labels,
                "artifacts": [a.model_dump(mode="json") for a in m.artifacts],
                "failed_exports": [f.model_dump(mode="json") for f in m.failed_exports],
                "created_at": m.created_at.isoformat(),
                "metric": m.metric.model_dump(mode="json") if m.metric else None,
                "gate": {a.name: _metric_text(m, a) for a in m.artifacts},
                "rejected": [r.model_dump(mode="json") for r in m.rejected],
                "present": [a.name for a in pkg.present_artifacts()],
            }
    if as_json:
        typer.echo(json.dumps(info))
        return
    _out.print(f"[bold]{escape(m.name)}[/bold] {m.version}  ({m.task})  digest {pkg.digest[:16]}")
    _out.print(f"signature: {info['signature']}", markup=False, highlight=False)
    _out.print("inputs:  " + "; ".join(info["inputs"]), markup=False, highlight=False)
    _out.print("outputs: " + "; ".join(info["outputs"]), markup=False, highlight=False)
    table = Table()
    if m.metric is not None:
        g = m.metric
        _out.print(
            f"accuracy gate: {g.name} ({g.direction} is better), floor {g.floor}, "
            f"max drop {g.max_drop}",
            markup=False,
            highlight=False,
        )
    metric_col = m.metric.name if m.metric else "metric"
    for col in ("artifact", "format", "precision", "size", "sha256", "batch"):
        table.add_column(col, no_wrap=True)
    for a in m.artifacts:
        table.add_row(
            escape(a.name),
            a.format,
            a.precision,
            _human(a.size),
            a.sha256[:12],
            str(a.fixed_batch or "any"),
        )
    _out.print(table)
    # One line per artifact (a table column would be cut on a narrow terminal).
    for a in m.artifacts:
        _out.print(f"{metric_col} {a.name}: {info['gate'][a.name]}", markup=False, highlight=False)
    for r in m.rejected:
        figure = "" if r.value is None else f" {r.metric or metric_col}={r.value:.4g}"
        _out.print(
            f"rejected {r.name} ({r.format}/{r.precision}):{figure} - {r.reason}",
            markup=False,
            highlight=False,
        )
    # Metrics have many optional fields: one line each reads better than a wide column.
    for a in m.artifacts:
        if a.metrics is not None:
            fields = a.metrics.model_dump(exclude_none=True, exclude={"host"})
            text = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()
            )
            _out.print(f"metrics {a.name}: {text}", markup=False, highlight=False)
    for f in m.failed_exports:
        _out.print(f"[yellow]failed export[/yellow] {f.format}/{f.precision}: {escape(f.reason)}")


def _read_inputs(specs: list, given: list[str]) -> dict:
    import numpy as np

    feed: dict = {}
    for item in given:
        name, sep, file = item.partition("=")
        if not sep:
            name, file = "", item
        path = Path(file)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                feed.update({k: z[k] for k in z.files})
            continue
        arr = np.load(path, allow_pickle=False)
        if not name:
            if len(specs) != 1:
                raise ValueError(
                    f"the model has inputs {[s.name for s in specs]}; name each one: "
                    f"--input NAME=file.npy (got an unnamed {file})"
                )
            name = specs[0].name
        feed[name] = arr
    return feed


@app.command()
def run(
    package: Path = typer.Argument(..., help="Package directory or .efpkg file."),
    inputs: list[str] = typer.Option(
        ..., "--input", "-i", help="x.npy (single-input model), NAME=x.npy, or inputs.npz."
    ),
    backend: str | None = _BACKEND,
    artifact: str | None = _ARTIFACT,
    output: Path | None = typer.Option(None, "--output", "-o", help="Write outputs to .npz."),
    trusted_key: list[Path] | None = _KEYS,
    require_signature: bool = _REQUIRE,
) -> None:
    """Run a package on inputs from .npy/.npz files; print or save the outputs."""
    with _errors():
        import numpy as np

        with _load(package, backend, trusted_key, require_signature, 0, artifact) as model:
            feed = _read_inputs(model.info.inputs, inputs)
            result = model.predict(feed)
            labels = model.info.manifest.labels
            if output is not None:
                np.savez(output, **result)
            _out.print(
                f"{model.info.name} {model.info.version} on {model.info.backend} "
                f"({model.info.artifact.name}; "
                f"{_metric_text(model.info.manifest, model.info.artifact)})",
                markup=False,
                highlight=False,
            )
            for name, arr in result.items():
                line = f"{name}: {arr.dtype}{list(arr.shape)}"
                if labels and arr.ndim == 2 and arr.shape[1] == len(labels):
                    line += "  top-1: " + ", ".join(labels[i] for i in arr.argmax(axis=1))
                _out.print(line, markup=False, highlight=False)
            if output is None:
                with np.printoptions(precision=4, suppress=True, threshold=200):
                    for name, arr in result.items():
                        _out.print(f"{name} =\n{arr}", markup=False, highlight=False)
            else:
                _out.print(f"wrote {output}", markup=False, highlight=False)


def _peak_rss_bytes() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def _measure(model, iterations: int, warmup: int, batch: int, progress: bool) -> dict:
    import time

    import numpy as np
    from rich.progress import Progress

    rng = np.random.default_rng(0)
    feed = {}
    for spec in model.info.inputs:
        shape = [d if isinstance(d, int) else batch for d in spec.shape]
        dt = np.dtype(spec.dtype)
        if dt.kind == "f":
            feed[spec.name] = rng.random(shape).astype(dt)
        elif dt.kind == "b":
            feed[spec.name] = rng.integers(0, 2, shape).astype(dt)
        else:
            feed[spec.name] = rng.integers(0, 10, shape).astype(dt)
    for _ in range(warmup):
        model.predict(feed)
    times = np.empty(iterations)
    from ._energy import EnergyMeter

    with (
        Progress(console=_err, transient=True, disable=not progress) as bar,
        EnergyMeter().measure() as energy,
    ):
        task = bar.add_task(f"bench {model.info.backend}", total=iterations)
        for i in range(iterations):
            t0 = time.perf_counter()
            model.predict(feed)
            times[i] = time.perf_counter() - t0
            bar.advance(task)
    return {
        "package": model.info.name,
        "version": model.info.version,
        "backend": model.info.backend,
        "artifact": model.info.artifact.name,
        "metric": _metric_text(model.info.manifest, model.info.artifact),
        "batch": batch,
        "iterations": iterations,
        "p50_ms": float(np.percentile(times, 50) * 1e3),
        "p95_ms": float(np.percentile(times, 95) * 1e3),
        "mean_ms": float(times.mean() * 1e3),
        "throughput_per_s": float(batch * iterations / times.sum()),
        "peak_rss_bytes": _peak_rss_bytes(),
        # Joules per predict call where the board exposes power, else None ("energy" says why).
        "energy_j_per_inference": energy.reading.per_inference(iterations),
        "energy": energy.reading.source,
    }


@app.command()
def bench(
    package: Path = typer.Argument(..., help="Package directory or .efpkg file."),
    backend: str | None = _BACKEND,
    iterations: int = typer.Option(200, "--iterations", "-n", min=1),
    warmup: int = typer.Option(10, "--warmup", min=0),
    batch: int = typer.Option(1, "--batch", min=1, help="Size of symbolic batch dimensions."),
    artifact: str | None = _ARTIFACT,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    trusted_key: list[Path] | None = _KEYS,
    require_signature: bool = _REQUIRE,
) -> None:
    """Latency p50/p95, throughput and peak RSS of Model.predict on random inputs."""
    with _errors():
        with _load(package, backend, trusted_key, require_signature, 0, artifact) as model:
            result = _measure(model, iterations, warmup, batch, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(
        "backend", "artifact", "metric", "p50 ms", "p95 ms", "samples/s", "peak RSS", "energy"
    )
    joules = result["energy_j_per_inference"]
    table.add_row(
        result["backend"],
        result["artifact"],
        escape(result["metric"]),
        f"{result['p50_ms']:.3f}",
        f"{result['p95_ms']:.3f}",
        f"{result['throughput_per_s']:.1f}",
        _human(result["peak_rss_bytes"]),
        f"{joules * 1e3:.3f} mJ/inference" if joules is not None else "not measured",
    )
    _out.print(table)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
