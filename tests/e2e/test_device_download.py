"""Per-device downloads end to end: a package with two int64 inputs and three artifacts is
registered in a real fleet process; a real agent process (through Mosquitto) downloads only
the artifact it runs (bytes counted on the wire by a TCP proxy), verifies each file against
the signed manifest, activates a partial package and serves it on ``/v1/predict``."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.fleet_with_devices import FleetWithDevices, active_slot_dir, endpoint_predict
from tests.support.text_models import encoder_inputs, encoder_reference, make_encoder_package

pytestmark = [pytest.mark.slow, pytest.mark.broker]

DIMS = {"vocab": 4000, "hidden": 64}  # ~1 MB per artifact, so headers do not dominate


def test_multi_input_package_per_device_download_and_endpoint(tmp_path, signing_keys):
    pytest.importorskip("onnxruntime")
    from edgefleet.sdk import open_package, select_artifacts

    priv, pub = signing_keys
    pkg = make_encoder_package(
        tmp_path / "encoder.efpkg", signing_key=priv,
        extra=(("encoder.int8.onnx", "int8"), ("encoder.fp16.onnx", "fp16")), **DIMS,
    )  # fmt: skip
    with open_package(pkg) as p:
        chosen = select_artifacts(p.manifest, profile="x86_64-cpu")
        total = sum(a.size for a in p.manifest.artifacts)
    assert [a.name for a in chosen] == ["encoder.int8.onnx"]
    artifact_bytes = chosen[0].size

    with FleetWithDevices(tmp_path / "run", priv, pub, {"enc-x86": "x86_64-cpu"}) as f:
        f.upload(pkg)
        wire = f.deploy("enc-x86", "encoder", "1.0.0")
        # one artifact of three crossed the wire, plus manifest, golden data and headers
        assert artifact_bytes < wire <= artifact_bytes * 1.05, (wire, artifact_bytes)
        assert wire < total / 2 and wire < pkg.stat().st_size / 2
        slot = active_slot_dir(f.dirs["enc-x86"])
        assert sorted(p.name for p in (slot / "artifacts").iterdir()) == ["encoder.int8.onnx"]
        with open_package(slot) as held:
            assert [a.name for a in held.present_artifacts()] == ["encoder.int8.onnx"]
            assert len(held.manifest.artifacts) == 3  # the signed manifest covers all three

        feed = encoder_inputs([6, 2, 9], vocab=DIMS["vocab"])
        want = encoder_reference(feed["input_ids"], feed["attention_mask"], **DIMS)
        got = endpoint_predict(f.ports["enc-x86"], feed)["outputs"]
        np.testing.assert_allclose(np.asarray(got["pooled"]), want["pooled"], atol=1e-5)
        assert np.asarray(got["last_hidden_state"]).shape == (3, 9, DIMS["hidden"])
        # a fractional id is refused, not truncated; the endpoint answers 400
        import urllib.error

        bad = {**feed, "input_ids": feed["input_ids"] + 0.5}
        with pytest.raises(urllib.error.HTTPError) as e:
            endpoint_predict(f.ports["enc-x86"], bad)
        assert e.value.code == 400
        assert "expected dtype int64, got float64" in e.value.read().decode()
