"""Reports of a matrix run: JUnit XML (for CI), a markdown table and an HTML page.

A cell that did not run is shown as "not run" with its reason (``<skipped>`` in JUnit),
never as passed.
"""

from __future__ import annotations

import html
import json
import logging
import xml.etree.ElementTree as ET
from pathlib import Path

from ._results import CHECKS, CellResult, MatrixResult

__all__ = ["cell_figures", "junit_xml", "markdown", "html_page", "write_reports"]

log = logging.getLogger(__name__)

_ICON = {"passed": "✅ passed", "failed": "❌ failed", "error": "💥 error", "not run": "⏭ not run"}


def cell_figures(cell: CellResult) -> str:
    """The headline figures of a cell, e.g. ``p95 0.5 ms · RSS 87 MB · err 1e-06``. Figures
    of checks that did not run (timing under qemu) stay in results.json only."""
    f: dict = {}
    for c in cell.checks:
        if c.status != "not run":
            f.update(c.figures)
    parts = []
    if "load_ms" in f:
        parts.append(f"load {f['load_ms']:.0f} ms")
    if f.get("latency_p95_ms") is not None:
        parts.append(f"p95 {f['latency_p95_ms']:.3g} ms")
    if f.get("peak_rss_mb") is not None:
        parts.append(f"RSS {f['peak_rss_mb']:.0f} MB")
    if f.get("max_abs_error") is not None:
        parts.append(f"err {f['max_abs_error']:.2g}")
    if "package_bytes" in f:
        parts.append(f"{f['package_bytes'] / 1e6:.2f} MB")
    if f.get("energy_j_per_inference") is not None:
        parts.append(f"{f['energy_j_per_inference'] * 1e3:.3g} mJ/inference")
    elif "energy_source" in f:
        parts.append("energy not measured")
    return " · ".join(parts)


def _check_text(cell: CellResult, name: str) -> str:
    c = cell.check(name)
    if c is None:
        return "—" if not cell.not_run_reason else "not run"
    return {"passed": "pass", "failed": "FAIL", "error": "ERROR", "not run": "not run"}[c.status]


def _notes(cell: CellResult) -> str:
    if cell.not_run_reason:
        return cell.not_run_reason
    bad = [f"{c.name}: {c.detail}" for c in cell.checks if c.status != "passed" and c.detail]
    return "; ".join(bad)


def junit_xml(result: MatrixResult) -> str:
    counts = result.counts()
    suites = ET.Element("testsuites", name="edgefleet-hil", time=f"{result.duration_s:.2f}")
    for cell in result.cells:
        checks = {c.name: c for c in cell.checks}
        names = [n for n in CHECKS if n in checks] or ["load"]
        suite = ET.SubElement(suites, "testsuite", name=cell.id, time=f"{cell.duration_s:.2f}")
        n = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for name in names:
            case = ET.SubElement(suite, "testcase", classname=cell.id.replace("/", "."), name=name)
            n["tests"] += 1
            c = checks.get(name)
            if cell.not_run_reason or c is None:
                ET.SubElement(case, "skipped", message=cell.not_run_reason or "check not run")
                n["skipped"] += 1
            elif c.status == "failed":
                ET.SubElement(case, "failure", message=c.detail).text = c.detail
                n["failures"] += 1
            elif c.status == "error":
                ET.SubElement(case, "error", message=c.detail).text = c.detail
                n["errors"] += 1
            elif c.status == "not run":
                ET.SubElement(case, "skipped", message=c.detail)
                n["skipped"] += 1
            if c is not None and c.figures:
                ET.SubElement(case, "system-out").text = json.dumps(c.figures)
        for k, v in n.items():
            suite.set(k, str(v))
    suites.set("tests", str(len(result.cells)))
    suites.set("failures", str(counts["failed"]))
    suites.set("errors", str(counts["error"]))
    suites.set("skipped", str(counts["not run"]))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _emulator_line(result: MatrixResult) -> list[str]:
    emu = result.host.get("emulator")
    if not emu:
        return []
    runs = ", ".join(f"{k} {v}" for k, v in emu.get("runtimes", {}).items()) or "none"
    return ["", f"Emulator: {emu.get('qemu', 'qemu')} ({emu.get('qemu_source', '?')}); "
                f"runtimes that run under it: {runs}"]  # fmt: skip


def markdown(result: MatrixResult) -> str:
    c = result.counts()
    lines = [
        "# edgefleet hardware-in-loop matrix",
        "",
        f"{len(result.cells)} cells: {c['passed']} passed, {c['failed']} failed, "
        f"{c['error']} errors, {c['not run']} not run · {result.duration_s:.1f} s · "
        f"host {result.host.get('machine', '?')}, {result.host.get('cpus', '?')} cpus",
        *_emulator_line(result),
        "",
        "| target | executor | runtime | package | result | "
        + " | ".join(CHECKS) + " | figures | notes |",
        "|" + "---|" * (len(CHECKS) + 7),
    ]  # fmt: skip
    for cell in result.cells:
        row = [cell.target, cell.executor, cell.runtime, cell.package, _ICON[cell.status]]
        row += [_check_text(cell, n) for n in CHECKS]
        row += [cell_figures(cell), _notes(cell)]
        lines.append("| " + " | ".join(_md(x) for x in row) + " |")
    return "\n".join(lines) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;font-size:14px;vertical-align:top}
.passed{background:#e6f4ea}.failed{background:#fce8e6}.error{background:#f9d0cc}
.not-run{background:#eee;color:#555}.fig{font-family:monospace;font-size:12px}"""


def html_page(result: MatrixResult) -> str:
    c = result.counts()
    e = html.escape
    rows = []
    for cell in result.cells:
        cls = cell.status.replace(" ", "-")
        tds = [e(cell.target), e(cell.executor), e(cell.runtime), e(cell.package)]
        tds.append(f"<b>{e(cell.status)}</b>")
        for n in CHECKS:
            chk = cell.check(n)
            title = e(chk.detail) if chk else e(cell.not_run_reason)
            tds.append(f'<span title="{title}">{e(_check_text(cell, n))}</span>')
        tds.append(f'<span class="fig">{e(cell_figures(cell))}</span>')
        tds.append(e(_notes(cell)))
        rows.append(f'<tr class="{cls}">' + "".join(f"<td>{t}</td>" for t in tds) + "</tr>")
    head = "".join(f"<th>{e(h)}</th>" for h in
                   ["target", "executor", "runtime", "package", "result", *CHECKS,
                    "figures", "notes"])  # fmt: skip
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>edgefleet HIL matrix</title>"
        f"<style>{_CSS}</style></head><body><h1>edgefleet hardware-in-loop matrix</h1>"
        f"<p>{len(result.cells)} cells: {c['passed']} passed, {c['failed']} failed, "
        f"{c['error']} errors, {c['not run']} not run; {result.duration_s:.1f} s; "
        f"started {e(result.started_at)}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"</body></html>\n"
    )


def write_reports(result: MatrixResult, out: Path) -> dict[str, Path]:
    """Write junit.xml, matrix.md, matrix.html and results.json into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "junit": (out / "junit.xml", junit_xml(result)),
        "markdown": (out / "matrix.md", markdown(result)),
        "html": (out / "matrix.html", html_page(result)),
        "json": (out / "results.json", json.dumps(result.to_dict(), indent=2) + "\n"),
    }
    for path, text in files.values():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # a reader never sees a half-written report
    return {k: p for k, (p, _) in files.items()}
