"""Cells on emulated aarch64 (qemu-user + Debian arm64 + aarch64 wheels).

The emulator is Debian 13's qemu-user 10.0, fetched with apt into the cache: under it ONNX
Runtime 1.32 and LiteRT 2.3 run (under Debian 12's qemu 7.2 both crash, measured).
"""

from __future__ import annotations

import json
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
    assert info["machine"] == "aarch64" and info["python"].startswith("3.11")
    assert info["qemu"].startswith("qemu-aarch64 10."), info
    assert info["qemu_source"].startswith("Debian trixie qemu-user_")
    assert emulator.qemu().startswith(str(emulator.cache))  # the fetched one, not the system's
    # Measured by running a model in each runtime under that qemu, not assumed.
    assert info["runtimes"] == {"onnxruntime": "1.32.0", "litert": "2.3.0"}, info["not_run"]
    assert info["emulated_runtimes"] == ["litert", "onnxruntime"]
    site_inode = emulator.site.stat().st_ino
    again = prepare_emulator(emulator.cache)  # idempotent: nothing re-downloaded
    assert again.site.stat().st_ino == site_inode and again.info() == info


def test_onnxruntime_and_litert_cells_on_emulated_aarch64(
    emulator, hil_packages, ref_package, tmp_path
):
    spec = MatrixSpec(
        packages=(hil_packages["tiny"], ref_package),
        targets=("raspberry-pi-4",),
        runtimes=("onnxruntime", "litert", "executorch"),
        executors={"raspberry-pi-4": ("emulated",)},
        emulator_cache=emulator.cache,
        latency_runs=5,
    )
    result = run_matrix(spec, tmp_path)
    cells = {(c.runtime, c.package): c for c in result.cells}
    ort = cells["onnxruntime", "tiny.efpkg"]
    litert = cells["litert", ref_package.name]
    for cell in (ort, litert):
        assert cell.status == "passed", cell.checks
        assert cell.environment["machine"] == "aarch64"
        assert cell.check("parity").figures["max_abs_error"] < 1e-4
        assert cell.check("cache").status == "passed"
        # Timing and RSS under qemu are not the board's: reported, never passed.
        assert cell.check("latency").status == "not run"
        assert cell.check("memory").status == "not run"
    et = cells["executorch", ref_package.name]
    assert et.status == "not run" and et.not_run_reason == EMULATED_NOT_RUN["executorch"]
    assert result.host["emulated_runtimes"] == ["litert", "onnxruntime"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["host"]["emulated_runtimes"] == ["litert", "onnxruntime"]
    assert (
        "runtimes that run under it: onnxruntime 1.32.0, litert 2.3.0"
        in (tmp_path / "matrix.md").read_text()
    )


def test_prepare_emulator_command_reuses_the_cache(emulator):
    from edgefleet.hardware._cli import app
    from typer.testing import CliRunner

    res = CliRunner().invoke(
        app, ["prepare-emulator", "--cache", str(emulator.cache)], env={"COLUMNS": "300"}
    )
    assert res.exit_code == 0, res.output
    assert "emulator ready" in res.output and "qemu-aarch64 10." in res.output
    assert "runtimes that run: onnxruntime 1.32.0, litert 2.3.0" in res.output
