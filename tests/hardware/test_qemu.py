"""The ONNX Runtime cell on emulated aarch64 (qemu-user + Debian arm64 + aarch64 wheels)."""

from __future__ import annotations

import shutil

import pytest
from edgefleet.hardware.hil import EMULATED_NOT_RUN, MatrixSpec, prepare_emulator, run_matrix

pytestmark = [
    pytest.mark.emulated,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("qemu-aarch64-static") is None,
        reason="qemu-user-static is not installed (scripts/system-deps.sh installs it)",
    ),
]


def test_emulator_root_is_real_aarch64_and_reused(emulator):
    info = emulator.info()
    assert info["machine"] == "aarch64"
    assert info["onnxruntime"] == "1.20.1" and info["python"].startswith("3.11")
    site_inode = emulator.site.stat().st_ino
    again = prepare_emulator(emulator.cache)  # idempotent: nothing re-downloaded
    assert again.site.stat().st_ino == site_inode and again.info() == info


def test_onnxruntime_cell_on_emulated_aarch64_passes_parity(emulator, hil_packages, tmp_path):
    spec = MatrixSpec(
        packages=(hil_packages["tiny"],),
        targets=("raspberry-pi-4",),
        runtimes=("onnxruntime", "litert"),
        executors={"raspberry-pi-4": ("emulated",)},
        emulator_cache=emulator.cache,
        latency_runs=5,
    )
    result = run_matrix(spec, tmp_path)
    ort, litert = result.cells
    assert ort.status == "passed", ort.checks
    assert ort.environment["machine"] == "aarch64"
    assert ort.check("parity").status == "passed"
    assert ort.check("parity").figures["max_abs_error"] < 1e-4
    assert ort.check("cache").status == "passed"
    # Timing and RSS under qemu are not the board's: reported, never passed.
    assert ort.check("latency").status == "not run"
    assert ort.check("memory").status == "not run"
    assert litert.status == "not run" and litert.not_run_reason == EMULATED_NOT_RUN["litert"]
    assert result.host["emulator"]["onnxruntime"] == "1.20.1"


def test_prepare_emulator_command_reuses_the_cache(emulator):
    from edgefleet.hardware._cli import app
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["prepare-emulator", "--cache", str(emulator.cache)])
    assert res.exit_code == 0, res.output
    assert "emulator ready" in res.output and "onnxruntime 1.20.1" in res.output
