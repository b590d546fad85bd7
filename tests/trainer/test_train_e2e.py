"""``edgefleet train`` on the digits recipe: a signed package the device trust policy
accepts, artifacts that load with the SDK backends and meet accuracy, a failed format
recorded rather than fatal, and the report files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgefleet.sdk import LoadOptions, TrustPolicy, load, open_package
from edgefleet.trainer import DataSpec, load_recipe, recipe_digest

from .conftest import FORCED_FAILURE

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def heldout():
    from edgefleet.trainer._data import load_dataset

    ds = load_dataset(DataSpec(dataset="digits", test_fraction=0.25), seed=0)
    return ds.x_test, ds.y_test


def test_cli_succeeds_and_prints_the_table(trained):
    assert trained.exit_code == 0, trained.stdout
    assert "model.int8.onnx" in trained.stdout
    assert str(trained.package) in trained.stdout.replace("\n", "")


def test_package_is_signed_and_accepted_by_the_device_policy(trained):
    with open_package(trained.package, TrustPolicy.device(trained.public_key)) as pkg:
        m = pkg.manifest
        assert m.signature is not None
        assert m.name == "digits" and m.version == "1.0.0"
        assert m.recipe_digest == recipe_digest(load_recipe(trained.recipe))
        assert m.labels == [str(i) for i in range(10)]
        assert m.inputs[0].shape == ["batch", 1, 8, 8]
        assert m.preprocessing.scale == pytest.approx(1 / 16)
        want_targets = load_recipe(trained.recipe).targets
        assert all(a.targets == want_targets for a in m.artifacts)
        assert pkg.golden_inputs()["input"].shape == (4, 1, 8, 8)


def test_a_tampered_package_is_refused(trained, tmp_path, signing_keys):
    from edgefleet.sdk import PackageError, SignatureError, generate_keypair

    _, other_pub = generate_keypair(tmp_path / "other")
    with pytest.raises((SignatureError, PackageError)):
        open_package(trained.package, TrustPolicy.device(other_pub))


def test_failed_format_is_recorded_and_the_rest_still_ship(trained):
    with open_package(trained.package, TrustPolicy.device(trained.public_key)) as pkg:
        m = pkg.manifest
        names = {a.name for a in m.artifacts}
        assert names == {
            "model.fp32.onnx", "model.int8.onnx", "model.fp32.tflite", "model.int8.tflite",
            "model.fp32.pte",
        }  # fmt: skip
        [failure] = m.failed_exports
        assert (failure.format, failure.precision) == ("pte", "int8")
        assert FORCED_FAILURE in failure.reason
    report = (trained.out / "report.md").read_text()
    assert "pte int8: RuntimeError: " + FORCED_FAILURE in report


@pytest.mark.parametrize(
    ("artifact", "backend"),
    [
        ("model.fp32.onnx", "onnxruntime"),
        ("model.int8.onnx", "onnxruntime"),
        ("model.fp32.tflite", "litert"),
        ("model.int8.tflite", "litert"),
        ("model.fp32.pte", "executorch"),
    ],
)
def test_artifacts_load_with_sdk_backends_and_meet_accuracy(trained, heldout, artifact, backend):
    pytest.importorskip({"onnxruntime": "onnxruntime", "litert": "ai_edge_litert",
                         "executorch": "executorch"}[backend])  # fmt: skip
    x, y = heldout
    opts = LoadOptions(artifact=artifact, trust=TrustPolicy.device(trained.public_key))
    with load(trained.package, backend=backend, options=opts) as model:
        assert model.smoke_test().passed, model.smoke_test().detail
        logits = model.predict({"input": x})["logits"]
        acc = float((logits.argmax(1) == y).mean())
        recorded = model.info.artifact.metrics
    assert recorded is not None and recorded.samples == len(y)
    # the SDK reproduces what the trainer measured and wrote into the manifest
    assert acc == pytest.approx(recorded.accuracy, abs=1e-9)
    assert recorded.reference_accuracy >= 0.9
    if artifact.startswith("model.fp32"):
        assert acc >= 0.9
        assert recorded.top1_agreement == 1.0 and recorded.max_abs_error < 1e-3
    else:
        assert acc >= recorded.reference_accuracy - 0.02
        assert recorded.top1_agreement >= 0.97
    assert recorded.latency_ms_p50 > 0


def test_int8_artifacts_are_smaller(trained):
    with open_package(trained.package, TrustPolicy.device(trained.public_key)) as pkg:
        size = {a.name: a.size for a in pkg.manifest.artifacts}
    assert size["model.int8.onnx"] < 0.6 * size["model.fp32.onnx"]
    assert size["model.int8.tflite"] < 0.6 * size["model.fp32.tflite"]


def test_report_files(trained):
    md = (trained.out / "report.md").read_text()
    assert "| model.int8.tflite | tflite | int8 |" in md
    assert "prune_channels" in md and "lowrank" in md
    png = (trained.out / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    summary = json.loads((trained.out / "report.json").read_text())
    assert summary["compressed_accuracy"] >= 0.9
    steps = {s["step"]: s for s in summary["steps"]}
    assert steps["prune_channels"]["params_after"] < steps["prune_channels"]["params_before"]


def test_golden_outputs_come_from_the_reference_with_a_measured_tolerance(trained):
    """A broken artifact cannot pass its own smoke test: every artifact's golden outputs
    are the torch reference's, and its tolerance follows its measured parity."""
    with open_package(trained.package, TrustPolicy.device(trained.public_key)) as pkg:
        fp32 = pkg.golden_outputs("model.fp32.onnx")["logits"]
        int8 = pkg.golden_outputs("model.int8.onnx")["logits"]
        art = pkg.manifest.artifact("model.int8.onnx")
        fp32_art = pkg.manifest.artifact("model.fp32.onnx")
    assert fp32.shape == int8.shape == (4, 10)
    np.testing.assert_array_equal(fp32, int8)
    assert art.golden_atol > fp32_art.golden_atol
    assert art.golden_atol >= 2 * art.metrics.max_abs_error
    assert fp32_art.golden_atol < 1e-2
