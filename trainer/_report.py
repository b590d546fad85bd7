"""The run report: a markdown table and a PNG plot of size vs latency vs the metric."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._pipeline import CompressResult

__all__ = ["write_report", "FP16_NOTE"]

log = logging.getLogger(__name__)


FP16_NOTE = (
    "fp16 figures were measured on ONNX Runtime's CPU provider on this host: ONNX Runtime "
    "runs ops without an fp16 CPU kernel through casts to fp32, so they measure fp16 weights "
    "and activations at op boundaries; fp16 arithmetic on a GPU (TensorRT/CUDA) was not "
    "measured here."
)


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _limits(floor: float | None, max_drop: float | None) -> str:
    parts = [f"floor {floor:g}" if floor is not None else "",
             f"max drop {max_drop:g}" if max_drop is not None else ""]  # fmt: skip
    return ", ".join(p for p in parts if p)


def _plot(result: CompressResult, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on build machines
    import matplotlib.pyplot as plt

    name = result.metric.name
    ok = [r for r in result.exports if r.metrics is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if ok:
        sizes = [r.size / 1024 for r in ok]
        lat = [r.metrics.latency_ms_p50 or 0.0 for r in ok]
        val = [r.metrics.value or 0.0 for r in ok]
        lo, hi = min(val), max(val)
        rel = [(v - lo) / (hi - lo) if hi > lo else 1.0 for v in val]
        if result.metric.direction == "lower":
            rel = [1 - r for r in rel]
        edges = ["black" if r.status == "shipped" else "red" for r in ok]
        sc = ax.scatter(sizes, lat, c=val, s=[40 + 300 * r for r in rel], cmap="viridis",
                        edgecolors=edges)  # fmt: skip
        for r, xs, ys in zip(ok, sizes, lat, strict=True):
            label = r.name if r.status == "shipped" else f"{r.name} (rejected)"
            ax.annotate(label, (xs, ys), textcoords="offset points", xytext=(5, 5), fontsize=8)
        fig.colorbar(sc, ax=ax, label=f"held-out {name}")
    ax.set_xscale("log")
    ax.margins(x=0.3, y=0.15)  # room for the artifact labels
    ax.set_xlabel("artifact size (KiB, log)")
    ax.set_ylabel("host latency p50, batch 1 (ms)")
    ax.set_title(f"{result.name} {result.version}: size vs latency vs {name}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def _robustness(result: CompressResult) -> list[str]:
    """Per artifact: the metric under each perturbation (the reference's in brackets)."""
    rows = [r for r in result.exports if r.metrics is not None and r.metrics.robustness]
    if not rows:
        return []
    rob = result.robustness or {}
    gate = rob.get("gate") or {}
    perts = rows[0].metrics.robustness
    lines = [
        "", "## Robustness", "",
        f"{result.metric.name} on {rob.get('samples', '?')} held-out samples under each input "
        "perturbation, against the reference model's outputs on the clean inputs; in brackets "
        f"the reference model under the same perturbation. Gate: "
        f"{_limits(gate.get('floor'), gate.get('max_drop')) or 'none'}.", "",
        *(f"- {p.name} ({', '.join(p.inputs)}): {p.setting}" for p in perts), "",
        "| artifact | " + "".join(f"{p.name} | " for p in perts) + "status |",
        "|---|" + "---:|" * len(perts) + "---|",
    ]  # fmt: skip
    for r in rows:
        cells = "".join(f"{_fmt(p.value, '.4f')} ({_fmt(p.reference_value, '.4f')}) | "
                        for p in r.metrics.robustness)  # fmt: skip
        lines.append(f"| {r.name} | {cells}{r.status} |")
    return lines


def write_report(result: CompressResult, out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, png = out_dir / "report.md", out_dir / "report.png"
    _plot(result, png)
    m = result.metric
    gate = _limits(m.floor, m.max_drop) or "no floor"
    lines = [
        f"# {result.name} {result.version}",
        "",
        f"- metric: **{m.name}** ({m.direction} is better; gate: {gate})",
        f"- reference (torch fp32, uncompressed) {m.name}: {_fmt(result.baseline_score, '.4f')}",
        f"- compressed torch fp32 {m.name}: {_fmt(result.compressed_score, '.4f')}",
        f"- parameters: {result.params_before} -> {result.params_after}",
        f"- package: `{result.package.name if result.package else '-'}`"
        + (f" ({result.package.stat().st_size} bytes)" if result.package else ""),
        "",
        "## Compression steps",
        "",
    ]
    lines += [
        f"{i + 1}. **{s.step}**{' (skipped)' if s.skipped else ''}: params {s.params_before} -> "
        f"{s.params_after}; {s.detail}"
        + (f"; {s.metric} {s.score:.4f}" if s.score is not None else "")
        for i, s in enumerate(result.steps)
    ] or ["(none)"]
    extra = sorted({k for r in result.exports if r.metrics for k in r.metrics.scores} - {m.name})
    lines += [
        "",
        "## Artifacts",
        "",
        f"| artifact | format | precision | quantization | size (bytes) | {m.name} | "
        + "".join(f"{k} | " for k in extra)
        + "latency p50 (ms) | export (s) | status |",
        "|---|---|---|---|---:|---:|" + "---:|" * len(extra) + "---:|---:|---|",
    ]
    for r in result.exports:
        if r.metrics is None:
            continue
        s = r.metrics
        status = "shipped" if r.status == "shipped" else f"rejected: {r.reason}"
        lines.append(
            f"| {r.name} | {r.format} | {r.precision} | {r.quantization or '-'} | {r.size} "
            f"| {_fmt(s.value, '.4f')} | "
            + "".join(f"{_fmt(s.scores.get(k), '.4g')} | " for k in extra)
            + f"{_fmt(s.latency_ms_p50, '.3f')} | {r.seconds:.1f} | {status} |"
        )
    if any(r.precision == "fp16" and r.metrics is not None for r in result.exports):
        lines += ["", FP16_NOTE]
    lines += _robustness(result)
    failed = [r for r in result.exports if r.error is not None]
    lines += ["", "## Failed exports", ""]
    lines += [f"- {r.format} {r.precision}: {r.error}" for r in failed] or ["(none)"]
    lines += ["", f"![size vs latency vs {m.name}]({png.name})", ""]
    md.write_text("\n".join(lines))
    log.info("report written to %s", md)
    return md, png
