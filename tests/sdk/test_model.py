"""load() and Model: choice of runtime, validation errors, batching, smoke test, caching."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from edgefleet.sdk import (
    BackendUnavailableError,
    ConfigError,
    InputError,
    LoadOptions,
    ModelCache,
    PersistentCache,
    ResultCache,
    load,
)
from edgefleet.sdk.backends import MockOptions

from tests.support.packages import make_package, tiny_inputs, tiny_reference

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    return make_package(tmp_path_factory.mktemp("m") / "tiny.efpkg")


def test_auto_choice_and_parity(pkg):
    with load(pkg) as model:
        assert model.info.backend == "onnxruntime"
        assert model.info.profile == "x86_64-cpu"
        x = tiny_inputs(3)
        out = model.predict(x)
        np.testing.assert_allclose(out["logits"], tiny_reference(x), rtol=1e-5, atol=1e-5)
        # dict input gives the same
        np.testing.assert_array_equal(model.predict({"input": x})["logits"], out["logits"])
        assert model.smoke_test().passed


def test_float64_is_cast_but_wrong_kinds_are_refused(pkg):
    with load(pkg) as model:
        x = tiny_inputs(2)
        np.testing.assert_allclose(
            model.predict(x.astype(np.float64))["logits"], model.predict(x)["logits"]
        )
        with pytest.raises(InputError, match=r"expected dtype float32, got <U"):
            model.predict(np.array([["a"] * 16]))
        with pytest.raises(InputError, match=r"expected 2 dimensions input: float32\[batch, 16\]"):
            model.predict(np.zeros(16, np.float32))
        with pytest.raises(InputError, match=r"dimension 1 must be 16.*got float32\[2, 15\]"):
            model.predict(np.zeros((2, 15), np.float32))
        with pytest.raises(InputError, match=r"unknown: \['image'\].*missing: \['input'\]"):
            model.predict({"image": x})
        snap = model.metrics.snapshot()
        assert snap.errors == 4 and snap.calls == 6


def test_nan_check_on_refuses_nan_and_counts_the_error(pkg):
    bad = tiny_inputs(2)
    bad[0, 3] = np.nan
    with load(pkg, options=LoadOptions(check_nan=True)) as model:
        with pytest.raises(InputError, match="input 'input' contains NaN"):
            model.predict(bad)
        assert model.predict(tiny_inputs(2))["logits"].shape == (2, 10)
        snap = model.metrics.snapshot()
        assert snap.errors == 1 and snap.calls == 2


def test_nan_check_is_off_by_default_and_keeps_the_other_checks(pkg):
    bad = tiny_inputs(2)
    bad[0, 3] = np.nan
    with load(pkg) as model:
        out = model.predict(bad)["logits"]
        assert np.isnan(out[0]).any() and np.isfinite(out[1]).all()
        with pytest.raises(InputError, match="dimension 1 must be 16"):
            model.predict(np.zeros((2, 15), np.float32))


def test_fixed_batch_artifact_is_split_and_merged(tmp_path):
    """An artifact exported for batch 1 still serves a batch of 5 through the SDK."""
    import json

    from edgefleet.sdk import open_package

    d = make_package(tmp_path / "d")
    m = json.loads((d / "manifest.json").read_text())
    m["artifacts"][0]["fixed_batch"] = 2
    (d / "manifest.json").write_text(json.dumps(m))
    seen = []

    def handler(feed):
        seen.append(feed["input"].shape[0])
        return {"logits": tiny_reference(feed["input"]).astype(np.float32)}

    with (
        open_package(d) as p,
        load(p, "mock", LoadOptions(mock=MockOptions(handler=handler), warmup=0)) as model,
    ):
        x = tiny_inputs(5)
        out = model.predict(x)["logits"]
    assert seen == [2, 2, 2], "three chunks of the fixed batch, the last padded"
    np.testing.assert_allclose(out, tiny_reference(x), rtol=1e-4, atol=1e-5)


def test_smoke_test_detects_wrong_golden(tmp_path):
    with load(make_package(tmp_path / "b.efpkg", break_golden=True)) as model:
        r = model.smoke_test()
    assert not r.passed and r.max_abs_error > 5 and "atol" in r.detail


def test_unknown_backend_profile_and_artifact(pkg):
    with pytest.raises(BackendUnavailableError, match="unknown backend 'nope'"):
        load(pkg, "nope")
    with pytest.raises(ConfigError, match="unknown target profile"):
        load(pkg, options=LoadOptions(profile="commodore-64"))
    with pytest.raises(ConfigError, match="no artifact 'x.tflite'"):
        load(pkg, options=LoadOptions(artifact="x.tflite"))
    # litert cannot run an ONNX-only package: the error says which formats exist
    with pytest.raises(BackendUnavailableError, match=r"formats \['onnx'\]"):
        load(pkg, "litert")


def test_profile_preference_order_is_followed(pkg):
    with load(pkg, options=LoadOptions(profile="raspberry-pi-4")) as model:
        # the Pi prefers litert, which has no artifact here: falls through to onnxruntime
        assert model.info.backend == "onnxruntime"
        assert model.info.profile == "raspberry-pi-4"


def test_result_cache_hits_and_read_only(pkg):
    cache = ResultCache(max_entries=8)
    with load(pkg, options=LoadOptions(cache=cache)) as model:
        x = tiny_inputs(2)
        first = model.predict(x)["logits"]
        second = model.predict(x.copy())["logits"]
        np.testing.assert_array_equal(first, second)
        assert not second.flags.writeable
        model.predict(tiny_inputs(2, seed=9))
        s = cache.stats()
        assert (s.hits, s.misses, s.entries) == (1, 2, 2)
        snap = model.metrics.snapshot()
        assert snap.cache_hit_rate == pytest.approx(1 / 3)


def test_cache_bounds_and_ttl(monkeypatch):
    c = ResultCache(max_entries=2, max_bytes=10_000, ttl_s=10)
    a = {"y": np.zeros(100, np.float32)}  # 400 bytes
    for k in "abc":
        c.put(k, a)
    assert c.get("a") is None and c.get("c") is not None
    assert c.stats().evictions == 1
    c.put("big", {"y": np.zeros(5000, np.float32)})  # larger than the whole cache
    assert c.get("big") is None
    import time as _time

    now = _time.monotonic()
    monkeypatch.setattr("edgefleet.sdk._cache.time.monotonic", lambda: now + 11)
    assert c.get("c") is None and c.stats().expirations == 1
    with pytest.raises(ConfigError):
        ResultCache(max_entries=0)


def test_persistent_cache_survives_restart(tmp_path, pkg):
    path = tmp_path / "cache.sqlite"
    x = tiny_inputs(2)
    with load(pkg, options=LoadOptions(cache=PersistentCache(path))) as model:
        expected = model.predict(x)["logits"]
    cache2 = PersistentCache(path, max_entries=1)
    with load(pkg, options=LoadOptions(cache=cache2)) as model:
        got = model.predict(x)["logits"]
    np.testing.assert_array_equal(got, expected)
    assert cache2.stats().hits == 1
    cache2.put("other", {"y": np.ones(3)})
    assert cache2.stats().entries == 1 and cache2.stats().evictions == 1
    cache2.close()


def test_predict_is_thread_safe(pkg):
    with load(pkg) as model:
        xs = [tiny_inputs(4, seed=s) for s in range(8)]
        results: dict[int, np.ndarray] = {}

        def work(i):
            for _ in range(20):
                results[i] = model.predict(xs[i])["logits"]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, x in enumerate(xs):
            np.testing.assert_allclose(results[i], tiny_reference(x), rtol=1e-5, atol=1e-5)
        snap = model.metrics.snapshot()
        assert snap.calls == 160 and snap.p50_ms is not None
        assert snap.p50_ms <= snap.p95_ms <= snap.p99_ms <= snap.max_ms


def test_model_cache_reuses_and_reloads_on_change(tmp_path):
    p = make_package(tmp_path / "p.efpkg")
    cache = ModelCache(max_models=2)
    m1 = cache.get(p)
    assert cache.get(p) is m1 and cache.loads == 1
    make_package(tmp_path / "p2.efpkg", seed=5).replace(p)
    m2 = cache.get(p)
    assert m2 is not m1 and cache.loads == 2
    cache.close()
