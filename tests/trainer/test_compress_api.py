"""Bring your own model: ``compress(model, calib_data, eval_fn, options)``."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from edgefleet.sdk import (  # noqa: E402
    LoadOptions,
    MetricSpec,
    TrustPolicy,
    load,
    open_package,
)
from edgefleet.trainer import (  # noqa: E402
    CompressOptions,
    DataSpec,
    ExportSpec,
    LowRank,
    QuantizeSpec,
    TrainSpec,
    VerifySpec,
    compress,
)
from edgefleet.trainer._data import load_dataset  # noqa: E402
from edgefleet.trainer._train import fit  # noqa: E402
from torch import nn  # noqa: E402


def test_compress_a_user_mlp_with_an_eval_fn(tmp_path, signing_keys):
    torch.manual_seed(0)
    ds = load_dataset(DataSpec(dataset="digits"), seed=1)
    x_tr, x_te = ds.x_train.reshape(-1, 64), ds.x_test.reshape(-1, 64)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    fit(model, x_tr, ds.y_train, TrainSpec(epochs=8, lr=5e-3))
    calls = []

    def eval_fn(predict):  # the user's own metric, no labels handed to the trainer
        calls.append(1)
        return float((predict(x_te).argmax(1) == ds.y_test).mean())

    opts = CompressOptions(
        name="user-mlp",
        version="0.3.0",
        metric=MetricSpec(name="accuracy", max_drop=0.05),
        steps=(LowRank(step="lowrank", energy=0.9, finetune_epochs=0),),
        quantize=QuantizeSpec(calibration_samples=32, onnx=["static", "dynamic"]),
        export=ExportSpec(formats=["onnx"]),
        verify=VerifySpec(latency_runs=3),
    )
    priv, pub = signing_keys
    res = compress(model, x_tr[:200], eval_fn, opts, out=tmp_path, signing_key=priv)
    assert res.params_after < res.params_before  # the 128x64 layer was factorised
    assert res.baseline_accuracy > 0.9 and res.compressed_accuracy > 0.85
    assert [r.name for r in res.exports] == [
        "model.fp32.onnx",
        "model.int8.onnx",
        "model.int8-dynamic.onnx",
    ]
    assert all(r.error is None for r in res.exports), [r.error for r in res.exports]
    # both int8 flavours pass the gate; only the better-scoring one ships
    statuses = sorted(r.status for r in res.exports)
    assert statuses == ["rejected", "shipped", "shipped"]
    # eval_fn scored the baseline, the low-rank candidates (the rank search), the compressed
    # model and every artifact through its runtime; then the reference model and every
    # artifact under each input perturbation (float input: noise at 3 SNRs)
    searched = res.steps[0].detail.count("energy ") or 1
    assert res.robustness["perturbations"] == ["snr_30db", "snr_20db", "snr_10db"]
    assert len(calls) == 1 + searched + 1 + 1 + 3 + 3 * (1 + 3)
    # the eval_fn's own inputs were perturbed: its accuracy moves under noise
    for r in res.shipped:
        rob = {p.name: p for p in r.metrics.robustness}
        assert rob["snr_10db"].reference_value != res.baseline_accuracy
        assert rob["snr_10db"].value == pytest.approx(rob["snr_10db"].reference_value, abs=0.05)
    with open_package(res.package, TrustPolicy.device(pub)) as pkg:
        assert pkg.manifest.inputs[0].shape == ["batch", 64]
        assert pkg.manifest.metric.name == "accuracy"
        for a in pkg.manifest.artifacts:
            assert a.metrics.accuracy > 0.85 and a.metrics.metric == "accuracy"
            assert a.metrics.reference_value == res.baseline_accuracy
        [rejected] = pkg.manifest.rejected
        assert "scored better" in rejected.reason
    opts_load = LoadOptions(artifact="model.int8.onnx", trust=TrustPolicy.device(pub))
    with load(res.package, backend="onnxruntime", options=opts_load) as m:
        out = m.predict(np.ascontiguousarray(x_te[:5]))["output"]
    assert out.shape == (5, 10)
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.png").is_file()
