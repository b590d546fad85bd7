"""Automatic artifact choice: the accuracy gate, the profile's runtime preference, then
precision; partial packages load only what they hold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from edgefleet.sdk import (
    PARTIAL_NAME,
    Artifact,
    ArtifactMetrics,
    BackendUnavailableError,
    LoadOptions,
    Manifest,
    MetricSpec,
    PackageError,
    files_for,
    load,
    open_package,
    select_artifacts,
    write_partial,
)

from tests.support.text_models import (
    GATE,
    encoder_inputs,
    encoder_reference,
    encoder_specs,
    make_gated_package,
)

pytest.importorskip("onnxruntime")


def _art(name: str, fmt: str, precision: str, value: float | None, size: int = 100) -> Artifact:
    metrics = None
    if value is not None:
        metrics = ArtifactMetrics(samples=64, metric="cosine", value=value, reference_value=1.0)
    return Artifact(
        name=name, path=f"artifacts/{name}", format=fmt, precision=precision,
        sha256="0" * 64, size=size, metrics=metrics,
    )  # fmt: skip


def _manifest(*arts: Artifact, metric: MetricSpec | None = GATE) -> Manifest:
    inputs, outputs = encoder_specs()
    return Manifest(
        name="m", version="1.0.0", inputs=inputs, outputs=outputs, artifacts=list(arts),
        metric=metric,
    )  # fmt: skip


def _names(m: Manifest, **kw) -> list[str]:
    return [a.name for a in select_artifacts(m, **kw)]


def test_gate_then_runtime_preference_then_precision():
    pytest.importorskip("ai_edge_litert")
    m = _manifest(
        _art("onnx.fp32", "onnx", "fp32", 1.0),
        _art("onnx.int4", "onnx", "int4", 0.43),  # the static-QDQ transformer
        _art("onnx.int8", "onnx", "int8", 0.995),
        _art("tfl.int8", "tflite", "int8", 0.95),
        _art("tfl.fp32", "tflite", "fp32", 0.9999),
    )
    # x86 prefers onnxruntime: int4 fails the gate, int8 passes
    assert _names(m, profile="x86_64-cpu") == ["onnx.int8"]
    # a Pi prefers LiteRT: its int8 fails, its fp32 passes
    assert _names(m, profile="raspberry-pi-4") == ["tfl.fp32"]
    # an explicit artifact is run even when it failed the gate
    assert _names(m, profile="x86_64-cpu", artifact="onnx.int4") == ["onnx.int4"]
    # same precision: the better figure, then the smaller file
    m2 = _manifest(
        _art("a", "onnx", "int8", 0.991, size=10), _art("b", "onnx", "int8", 0.999, size=20),
        _art("c", "onnx", "int8", 0.999, size=5),
    )  # fmt: skip
    assert _names(m2, profile="x86_64-cpu") == ["c"]
    # lower-is-better metrics with a max drop against the reference
    lower = MetricSpec(name="cosine", direction="lower", max_drop=0.1)
    m3 = _manifest(
        _art("x", "onnx", "int8", 1.5), _art("y", "onnx", "fp32", 1.05), metric=lower
    )  # reference 1.0: x drops 0.5 (fails), y 0.05
    assert _names(m3, profile="x86_64-cpu") == ["y"]


def test_no_passing_artifact_is_a_clear_error():
    m = _manifest(_art("q", "onnx", "int8", 0.5), _art("r", "onnx", "fp32", None))
    with pytest.raises(BackendUnavailableError, match=r"passes its accuracy gate.*q=0.5, r=None"):
        select_artifacts(m, profile="x86_64-cpu")


def test_package_without_gate_keeps_precision_order():
    m = _manifest(_art("f", "onnx", "fp32", None), _art("i", "onnx", "int8", None), metric=None)
    assert _names(m, profile="x86_64-cpu") == ["i"]


@pytest.fixture(scope="module")
def gated_pkg(tmp_path_factory) -> Path:
    return make_gated_package(tmp_path_factory.mktemp("gated"))


def test_load_never_picks_the_artifact_that_fails_the_gate(gated_pkg):
    feed = encoder_inputs([6, 3])
    ref = encoder_reference(feed["input_ids"], feed["attention_mask"])
    with load(gated_pkg, options=LoadOptions(profile="x86_64-cpu")) as model:
        assert model.info.artifact.name == "good.int8"
        np.testing.assert_allclose(model.predict(feed)["pooled"], ref["pooled"], atol=1e-5)
        assert model.smoke_test().passed
    with load(gated_pkg, options=LoadOptions(artifact="broken.int4")) as model:
        assert not np.allclose(model.predict(feed)["pooled"], ref["pooled"], atol=1e-3)


def test_partial_package_loads_what_it_holds(gated_pkg, tmp_path):
    """A device's partial package: the signed manifest of all three artifacts, the files of
    one; hashes of what is present are checked, an absent artifact cannot be loaded."""
    d = tmp_path / "partial"
    with open_package(gated_pkg) as full:
        chosen = select_artifacts(full.manifest, profile="x86_64-cpu")
        needed = files_for(full.manifest, chosen)
    assert [f.path for f in needed] == [
        "artifacts/good.int8",
        "golden/good.int8.outputs.npz",
        "golden/inputs.npz",
    ]
    assert all(f.sha256 and f.size for f in needed)  # golden files are hashed too
    for f in needed:
        (d / f.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(gated_pkg / f.path, d / f.path)
    shutil.copyfile(gated_pkg / "manifest.json", d / "manifest.json")
    with pytest.raises(PackageError, match=r"artifact ref.fp32 is missing"):
        open_package(d)  # without the marker it is a whole package with files missing
    write_partial(d, chosen)
    assert (d / PARTIAL_NAME).is_file()
    with open_package(d) as pkg:
        assert pkg.partial and [a.name for a in pkg.present_artifacts()] == ["good.int8"]
        with pytest.raises(PackageError, match=r"ref.fp32 is not present in this partial"):
            pkg.artifact_path("ref.fp32")
    with load(d) as model:
        assert model.info.artifact.name == "good.int8" and model.smoke_test().passed
    from edgefleet.sdk._cli import app
    from typer.testing import CliRunner

    info = json.loads(CliRunner().invoke(app, ["inspect", str(d), "--json"]).stdout)
    assert info["present"] == ["good.int8"] and len(info["artifacts"]) == 3
    with pytest.raises(PackageError, match=r"'ref.fp32' .* not present .*\['good.int8'\]"):
        load(d, options=LoadOptions(artifact="ref.fp32"))
    # a present file is still verified against the signed manifest
    (d / "golden/inputs.npz").write_bytes(b"tampered")
    with pytest.raises(PackageError, match=r"golden file golden/inputs.npz is corrupt"):
        open_package(d)
