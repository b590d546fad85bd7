"""Generative HIL cells: a real generative package through the matrix runner (load, greedy
parity, TTFT against the latency budget with decode tokens/s, result cache, peak RSS)."""

from __future__ import annotations

import pytest
from edgefleet.hardware.hil import MatrixSpec, run_matrix

pytest.importorskip("onnxruntime_genai")

from tests.support.llm import tiny_llm

pytestmark = pytest.mark.slow


def test_generative_cells_pass_and_fail_on_their_budgets(tmp_path):
    pkg = tiny_llm().package
    spec = MatrixSpec(
        packages=(pkg,),
        targets=("x86_64-cpu", "raspberry-pi-4", "raspberry-pi-5"),
        runtimes=("onnxruntime", "litert"),
        executors={"raspberry-pi-4": ("limited",), "raspberry-pi-5": ("limited",)},
        # Impossible budgets on purpose: the model does not fit a Pi 4 with 1 MB of RSS,
        # and no TTFT meets 1 ns on the Pi 5.
        budgets={
            "x86_64-cpu": {"p95_latency_ms": 2000.0},
            "raspberry-pi-4": {"peak_rss_mb": 1},
            "raspberry-pi-5": {"p95_latency_ms": 1e-6},
        },  # fmt: skip
        latency_runs=30,
    )
    result = run_matrix(spec, tmp_path)
    cells = {(c.target, c.runtime): c for c in result.cells}
    host = cells[("x86_64-cpu", "onnxruntime")]
    assert host.status == "passed", [(c.name, c.status, c.detail) for c in host.checks]
    assert "ort-genai" in host.check("load").detail
    assert "greedy token match" in host.check("parity").detail
    lat = host.check("latency")
    assert "TTFT p95" in lat.detail and lat.figures["decode_tokens_per_s"] > 0
    assert host.check("cache").status == "passed"
    # LiteRT has no generation runtime: the cell says why instead of passing.
    litert = cells[("x86_64-cpu", "litert")]
    assert litert.status == "not run" and "no artifact for litert" in litert.not_run_reason
    pi4 = cells[("raspberry-pi-4", "onnxruntime")]
    assert pi4.check("memory").status == "failed" and pi4.status == "failed"
    pi5 = cells[("raspberry-pi-5", "onnxruntime")]
    assert pi5.check("parity").status == "passed"
    assert pi5.check("latency").status == "failed" and pi5.status == "failed"
    assert not result.ok
