"""The run report: a markdown table and a PNG plot of size vs latency vs accuracy."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._pipeline import CompressResult

__all__ = ["write_report"]

log = logging.getLogger(__name__)


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _plot(result: CompressResult, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on build machines
    import matplotlib.pyplot as plt

    ok = [r for r in result.exports if r.metrics is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if ok:
        sizes = [r.size / 1024 for r in ok]
        lat = [r.metrics.latency_ms_p50 or 0.0 for r in ok]
        acc = [r.metrics.accuracy or 0.0 for r in ok]
        sc = ax.scatter(sizes, lat, c=acc, s=[40 + 300 * a for a in acc], cmap="viridis",
                        edgecolors="black")  # fmt: skip
        for r, xs, ys in zip(ok, sizes, lat, strict=True):
            ax.annotate(r.name, (xs, ys), textcoords="offset points", xytext=(5, 5), fontsize=8)
        fig.colorbar(sc, ax=ax, label="held-out accuracy")
    ax.set_xscale("log")
    ax.margins(x=0.3, y=0.15)  # room for the artifact labels
    ax.set_xlabel("artifact size (KiB, log)")
    ax.set_ylabel("host latency p50, batch 1 (ms)")
    ax.set_title(f"{result.name} {result.version}: size vs latency vs accuracy")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def write_report(result: CompressResult, out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, png = out_dir / "report.md", out_dir / "report.png"
    _plot(result, png)
    lines = [
        f"# {result.name} {result.version}",
        "",
        f"- reference (torch fp32, uncompressed) accuracy: {_fmt(result.baseline_accuracy, '.4f')}",
        f"- compressed torch fp32 accuracy: {_fmt(result.compressed_accuracy, '.4f')}",
        f"- parameters: {result.params_before} -> {result.params_after}",
        f"- package: `{result.package.name if result.package else '-'}`"
        + (f" ({result.package.stat().st_size} bytes)" if result.package else ""),
        "",
        "## Compression steps",
        "",
    ]
    lines += [
        f"{i + 1}. **{s.step}**: params {s.params_before} -> {s.params_after}; {s.detail}"
        + (f"; accuracy {s.accuracy:.4f}" if s.accuracy is not None else "")
        for i, s in enumerate(result.steps)
    ] or ["(none)"]
    lines += [
        "",
        "## Artifacts",
        "",
        "| artifact | format | precision | size (bytes) | accuracy | top-1 agreement "
        "| max abs error | latency p50 (ms) | export (s) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result.exports:
        if r.metrics is None:
            continue
        m = r.metrics
        lines.append(
            f"| {r.name} | {r.format} | {r.precision} | {r.size} | {_fmt(m.accuracy, '.4f')} "
            f"| {_fmt(m.top1_agreement, '.4f')} | {_fmt(m.max_abs_error, '.4g')} "
            f"| {_fmt(m.latency_ms_p50, '.3f')} | {r.seconds:.1f} |"
        )
    failed = [r for r in result.exports if r.error is not None]
    lines += ["", "## Failed exports", ""]
    lines += [f"- {r.format} {r.precision}: {r.error}" for r in failed] or ["(none)"]
    lines += ["", f"![size vs latency vs accuracy]({png.name})", ""]
    md.write_text("\n".join(lines))
    log.info("report written to %s", md)
    return md, png
