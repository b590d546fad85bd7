"""Any model's signature through the SDK: two int64 inputs, symbolic batch and sequence,
two outputs, no silent casts, and fixed-shape buckets padded with the mask."""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgefleet.sdk import InputError, LoadOptions, load, open_package

from tests.support.text_models import encoder_inputs, encoder_reference, make_encoder_package

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def dynamic_pkg(tmp_path_factory):
    return make_encoder_package(tmp_path_factory.mktemp("enc") / "enc.efpkg")


@pytest.fixture(scope="module")
def bucket_pkg(tmp_path_factory):
    return make_encoder_package(tmp_path_factory.mktemp("enc") / "b", buckets=(16, 4, 8))


def _close(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seq", [3, 7, 40])
def test_two_int64_inputs_any_sequence_length(dynamic_pkg, seq):
    with load(dynamic_pkg) as model:
        feed = encoder_inputs([seq, max(1, seq - 2)])
        out = model.predict(feed)
        _close(out, encoder_reference(feed["input_ids"], feed["attention_mask"]))
        assert out["last_hidden_state"].shape == (2, seq, 16)
        assert model.info.buckets == ()


def test_no_silent_cast_and_symbols_bind_across_inputs(dynamic_pkg):
    with load(dynamic_pkg) as model:
        feed = encoder_inputs([5, 3])
        # int ids as float: refused, naming expected vs got
        with pytest.raises(InputError, match=r"'input_ids': expected dtype int64, got float32"):
            model.predict({**feed, "input_ids": feed["input_ids"].astype(np.float32)})
        with pytest.raises(InputError, match=r"expected dtype int64, got bool"):
            model.predict({**feed, "attention_mask": feed["attention_mask"].astype(bool)})
        # int32 ids and Python lists are integer -> integer and value-preserving: accepted
        ref = model.predict(feed)
        _close(model.predict({**feed, "input_ids": feed["input_ids"].astype(np.int32)}), ref)
        _close(model.predict({k: v.tolist() for k, v in feed.items()}), ref)
        # uint64 values beyond int64 are refused, not wrapped
        big = feed["input_ids"].astype(np.uint64)
        big[0, 0] = 2**63 + 5
        with pytest.raises(InputError, match=r"outside int64's range"):
            model.predict({**feed, "input_ids": big})
        # the same symbol must have one size across inputs
        with pytest.raises(
            InputError,
            match=r"'attention_mask': dimension 'sequence' is 4 but 'input_ids' has sequence=5",
        ):
            model.predict({**feed, "attention_mask": feed["attention_mask"][:, :4]})
        with pytest.raises(InputError, match=r"dimension 'batch' is 1"):
            model.predict({**feed, "attention_mask": feed["attention_mask"][:1]})
        with pytest.raises(InputError, match=r"several inputs; pass a dict"):
            model.predict(feed["input_ids"])


def test_buckets_pad_with_the_mask_and_slice_back(bucket_pkg):
    with load(bucket_pkg) as model:
        assert [a.name for a in model.info.buckets] == [
            "encoder.seq4.onnx",
            "encoder.seq8.onnx",
            "encoder.seq16.onnx",
        ]
        for lengths in ([3, 2], [4], [7, 5, 1], [16, 9]):
            feed = encoder_inputs(lengths)
            out = model.predict(feed)
            # padding is invisible: same as the unpadded reference, cut to the true length
            _close(out, encoder_reference(feed["input_ids"], feed["attention_mask"]))
            assert out["last_hidden_state"].shape[1] == max(lengths)
        assert model.smoke_test().passed
        with pytest.raises(
            InputError, match=r"sequence=17, longer than the largest shape bucket \(sequence=16"
        ):
            model.predict(encoder_inputs([17]))


def test_bucket_choice_is_the_smallest_that_fits(bucket_pkg, tmp_path):
    """Each bucket is a fixed-shape ONNX file: a wrong pick would make onnxruntime refuse
    the shape; count which bucket ran through a wrapped session."""
    with load(bucket_pkg) as model:
        ran = []
        for bucket, session in model._buckets:
            orig = session.run

            def run(feed, _orig=orig, _n=bucket.sizes["sequence"]):
                ran.append((_n, feed["input_ids"].shape[1], int(feed["attention_mask"][0, -1])))
                return _orig(feed)

            session.run = run
        for n in (1, 4, 5, 8, 9, 16):
            model.predict(encoder_inputs([n]))
        assert [r[0] for r in ran] == [4, 4, 8, 8, 16, 16]
        assert all(r[0] == r[1] for r in ran)
        # padded positions carry mask 0
        assert [r[2] for r in ran] == [0, 1, 0, 1, 0, 1]


def test_bucket_with_fixed_batch_runs_in_chunks(tmp_path):
    pkg = make_encoder_package(tmp_path / "p", buckets=(4, 8), bucket_batch=1)
    with load(pkg) as model:
        feed = encoder_inputs([3, 6, 2])
        _close(model.predict(feed), encoder_reference(feed["input_ids"], feed["attention_mask"]))


def test_explicit_bucket_artifact_loads_its_group(bucket_pkg):
    with load(bucket_pkg, options=LoadOptions(artifact="encoder.seq8.onnx")) as model:
        assert len(model.info.buckets) == 3


def test_bad_bucket_manifest_is_a_package_error(tmp_path):
    from edgefleet.sdk import PackageError

    d = make_encoder_package(tmp_path / "d", buckets=(4,))
    m = json.loads((d / "manifest.json").read_text())
    m["artifacts"][0]["input_shapes"]["attention_mask"] = ["batch", 8]
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PackageError, match=r"symbol 'sequence' is fixed to both 4 and 8"):
        load(open_package(d))
