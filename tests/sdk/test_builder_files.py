"""PackageBuilder: extra package files (tokenizers), the gate, rejected artifacts, buckets."""

from __future__ import annotations

import numpy as np
import pytest
from edgefleet.sdk import (
    MetricSpec,
    PackageBuilder,
    PackageError,
    RejectedArtifact,
    TensorSpec,
    TrustPolicy,
    generate_keypair,
    load_private_key,
    open_package,
    sha256_file,
)

IDS = TensorSpec(name="input_ids", dtype="int64", shape=["batch", "sequence"])
EMB = TensorSpec(name="embedding", dtype="float32", shape=["batch", 4])


def test_files_gate_and_buckets_are_signed_and_verified(tmp_path):
    priv, pub = generate_keypair(tmp_path / "keys")
    tok = tmp_path / "tokenizer.json"
    tok.write_text('{"model": {"vocab": {"a": 0}}}')
    art = tmp_path / "m.tflite"
    art.write_bytes(b"\x00" * 64)
    with PackageBuilder("enc", "1.0.0", inputs=[IDS], outputs=[EMB], task="embedding") as b:
        b.set_golden_inputs({"input_ids": np.zeros((1, 8), np.int64)})
        entry = b.add_file(tok, role="tokenizer", path="tokenizer/tokenizer.json")
        assert entry.sha256 == sha256_file(tok) and entry.size == tok.stat().st_size
        with pytest.raises(PackageError, match="added twice"):
            b.add_file(tok, role="tokenizer", path="tokenizer/tokenizer.json")
        with pytest.raises(ValueError, match="relative path inside the package"):
            b.add_file(tok, path="../escape.json")
        with pytest.raises(PackageError, match="does not exist"):
            b.add_file(tmp_path / "missing.json")
        b.set_gate(MetricSpec(name="cosine", floor=0.99), {"input_ids": 0})
        b.add_artifact(art, format="tflite", precision="int8", name="model.int8.sequence8.tflite",
                       quantization="dynamic-range-int8", input_shapes={"input_ids": [1, 8]},
                       bucket_group="model.int8.tflite", fixed_batch=1)  # fmt: skip
        b.reject(RejectedArtifact(name="model.int4.onnx", format="onnx", precision="int4",
                                  metric="cosine", value=0.9, reference_value=1.0,
                                  reason="cosine 0.9 misses the gate (floor 0.99)"))  # fmt: skip
        pkg_path = b.build(tmp_path / "enc.efpkg", signing_key=load_private_key(priv))
    with open_package(pkg_path, TrustPolicy.device(pub)) as pkg:
        m = pkg.manifest
        tok_files = [(f.path, f.role) for f in m.files if f.role != "golden"]
        assert tok_files == [("tokenizer/tokenizer.json", "tokenizer")]
        # golden files are hashed too, so a device checks each one it downloads
        assert {f.path for f in m.files if f.role == "golden"} >= {"golden/inputs.npz"}
        assert (pkg.root / "tokenizer/tokenizer.json").read_text() == tok.read_text()
        assert m.metric.floor == 0.99 and m.pad_values == {"input_ids": 0.0}
        a = m.artifacts[0]
        assert a.input_shapes == {"input_ids": [1, 8]} and a.bucket_group == "model.int8.tflite"
        assert a.quantization == "dynamic-range-int8"
        assert m.rejected[0].value == 0.9
