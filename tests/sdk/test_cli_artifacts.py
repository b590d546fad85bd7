"""``edgefleet sdk`` and the accuracy gate: metrics by name, rejected artifacts,
``--artifact`` for run and bench."""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgefleet.sdk._cli import app
from typer.testing import CliRunner

from tests.support.text_models import encoder_inputs, make_gated_package

pytest.importorskip("onnxruntime")
runner = CliRunner()


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    return make_gated_package(tmp_path_factory.mktemp("gcli"))


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_inspect_shows_metric_by_name_and_rejected(gated):
    r = _invoke("inspect", gated)
    assert r.exit_code == 0, r.output
    out = " ".join(r.stdout.split())
    assert "accuracy gate: cosine (higher is better), floor 0.99" in out
    assert "cosine=0.999 (ref 1) pass" in out and "cosine=0.43 (ref 1) FAIL" in out
    assert "rejected static.int8 (onnx/int8): cosine=0.43 - below the floor 0.99" in out
    data = json.loads(_invoke("inspect", gated, "--json").stdout)
    assert data["metric"]["name"] == "cosine"
    assert data["gate"]["broken.int4"] == "cosine=0.43 (ref 1) FAIL"
    assert data["rejected"][0]["value"] == 0.43
    assert data["present"] == ["ref.fp32", "broken.int4", "good.int8"]


def test_run_and_bench_take_artifact(gated, tmp_path):
    feed = encoder_inputs([3, 2])
    np.savez(tmp_path / "in.npz", **feed)
    r = _invoke("run", gated, "-i", tmp_path / "in.npz", "-o", tmp_path / "auto.npz")
    assert r.exit_code == 0, r.output
    assert "(good.int8; cosine=0.999 (ref 1) pass)" in r.stdout
    r = _invoke("run", gated, "-i", tmp_path / "in.npz", "--artifact", "broken.int4",
                "-o", tmp_path / "broken.npz")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "(broken.int4; cosine=0.43 (ref 1) FAIL)" in r.stdout
    with np.load(tmp_path / "auto.npz") as a, np.load(tmp_path / "broken.npz") as b:
        assert not np.allclose(a["pooled"], b["pooled"], atol=1e-3)
    r = _invoke("bench", gated, "-n", "5", "--warmup", "1", "--artifact", "ref.fp32", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["artifact"] == "ref.fp32" and res["metric"] == "cosine=1 (ref 1) pass"
    r = _invoke("bench", gated, "-n", "3", "--artifact", "nope")
    assert r.exit_code == 1 and "package has no artifact 'nope'" in r.stderr
