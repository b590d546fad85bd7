"""``edgefleet sdk inspect | run | bench`` on the real reference package."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edgefleet.sdk import load_private_key, open_package, sign_manifest, write_archive
from edgefleet.sdk._cli import app
from typer.testing import CliRunner

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _one_clean_error_line(result, pattern: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert pattern in lines[0], lines[0]


@pytest.fixture(scope="module")
def signed_package(reference_package, signing_keys, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("signed") / "pkg"
    shutil.copytree(reference_package.path, out)
    signed = sign_manifest(open_package(out).manifest, load_private_key(signing_keys[0]))
    (out / "manifest.json").write_text(signed.model_dump_json(indent=2))
    return out


def test_inspect_table(reference_package):
    r = _invoke("inspect", reference_package.path)
    assert r.exit_code == 0, r.output
    assert "tiny-digits 1.0.0" in r.stdout
    assert "input: float32[batch, 1, 8, 8]" in r.stdout
    for fmt in ("onnx", "tflite", "pte", "pt2"):
        assert f"model.fp32.{fmt}" in r.stdout
    assert "signature: unsigned" in r.stdout
    assert "metrics model.fp32.tflite: samples=4, top1_agreement=1" in r.stdout


def test_inspect_json(reference_package):
    r = _invoke("inspect", reference_package.path, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["name"] == "tiny-digits" and info["signature"] == "unsigned"
    assert sorted(a["format"] for a in info["artifacts"]) == ["onnx", "pt2", "pte", "tflite"]
    pkg = open_package(reference_package.path)
    assert info["digest"] == pkg.digest
    assert {a["sha256"] for a in info["artifacts"]} == {a.sha256 for a in pkg.manifest.artifacts}


def test_inspect_signature_states(reference_package, signed_package, signing_keys):
    r = _invoke("inspect", signed_package, "--trusted-key", signing_keys[1], "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["signature"].endswith("(verified)")
    r = _invoke("inspect", signed_package, "--json")
    assert "not verified" in json.loads(r.stdout)["signature"]
    r = _invoke("inspect", reference_package.path, "--require-signature", "-k", signing_keys[1])
    _one_clean_error_line(r, "is not signed")


def test_run_writes_outputs_matching_the_reference(reference_package, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, reference_package.golden_inputs["input"])
    out = tmp_path / "out.npz"
    r = _invoke("run", reference_package.path, "--input", x, "-b", "onnxruntime", "-o", out)
    assert r.exit_code == 0, r.output
    assert "on onnxruntime" in r.stdout and "logits: float32[4, 10]" in r.stdout
    with np.load(out) as z:
        np.testing.assert_allclose(z["logits"], reference_package.reference, atol=1e-4)


def test_run_named_input_on_litert_prints_outputs(reference_package, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, reference_package.golden_inputs["input"][:2])
    r = _invoke("run", reference_package.path, "--input", f"input={x}", "--backend", "litert")
    assert r.exit_code == 0, r.output
    assert "on litert" in r.stdout and "top-1:" in r.stdout and "logits =" in r.stdout


def test_run_bad_inputs_are_one_clean_line(reference_package, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((1, 3, 8, 8), np.float32))
    r = _invoke("run", reference_package.path, "--input", bad, "-b", "onnxruntime")
    _one_clean_error_line(r, "input")
    r = _invoke("run", reference_package.path, "--input", tmp_path / "missing.npy")
    _one_clean_error_line(r, "missing.npy")
    r = _invoke("run", reference_package.path, "--input", bad, "--backend", "nope")
    _one_clean_error_line(r, "unknown backend 'nope'")
    r = _invoke("run", tmp_path / "no-such-pkg", "--input", bad)
    _one_clean_error_line(r, "no package at")


def test_bench_json(reference_package):
    r = _invoke("bench", reference_package.path, "-b", "onnxruntime", "-n", "30", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["backend"] == "onnxruntime" and res["iterations"] == 30
    assert 0 < res["p50_ms"] <= res["p95_ms"]
    assert res["throughput_per_s"] > 0 and res["peak_rss_bytes"] > 10 * 2**20
    # Joules only where the board exposes power (this host: none), never an estimate.
    assert (res["energy_j_per_inference"] is None) == res["energy"].startswith("not measured")


def test_archive_package_inspect_and_run(reference_package, tmp_path):
    archive = write_archive(reference_package.path, tmp_path / "tiny.efpkg")
    r = _invoke("inspect", archive, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["digest"] == open_package(reference_package.path).digest
    x = tmp_path / "x.npz"
    np.savez(x, input=reference_package.golden_inputs["input"])
    out = tmp_path / "out.npz"
    r = _invoke("run", archive, "-i", x, "-b", "executorch", "-o", out)
    assert r.exit_code == 0, r.output
    with np.load(out) as z:
        np.testing.assert_allclose(z["logits"], reference_package.reference, atol=1e-4)


def test_bench_table(reference_package):
    r = _invoke("bench", reference_package.path, "-b", "litert", "-n", "10", "--batch", "3")
    assert r.exit_code == 0, r.output
    assert "litert" in r.stdout and "p95 ms" in r.stdout


def test_real_edgefleet_command(reference_package):
    exe = Path(sys.executable).with_name("edgefleet")
    proc = subprocess.run(
        [str(exe), "sdk", "inspect", str(reference_package.path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["name"] == "tiny-digits"
