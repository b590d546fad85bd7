"""The per-call checks made cheap for tiny models still catch what they must: NaN in small
and large inputs of every float width (+inf with -inf is not NaN), and every metric."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from edgefleet.sdk import InputError, Metrics, TensorSpec
from edgefleet.sdk._validate import InputValidator


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("n", [3, 128, 129, 1024, 50_000])
def test_nan_found_at_any_size_and_infinities_pass(dtype, n):
    check = InputValidator([TensorSpec(name="x", dtype=dtype, shape=["batch", n])])
    x = np.ones((2, n), dtype)
    x[0, 0], x[1, -1] = np.inf, -np.inf  # a Python sum of these is NaN: not a NaN input
    feed, sizes = check(x)
    assert sizes == {"batch": 2} and feed["x"] is x
    x[1, n // 2] = np.nan
    with pytest.raises(InputError, match="contains NaN"):
        check(x)
    # huge finite values overflow a sum/dot to inf, never to NaN
    big = np.full((1, n), np.finfo(dtype).max, dtype)
    check(big)
    allow = InputValidator([TensorSpec(name="x", dtype=dtype, shape=[1, n], allow_nan=True)])
    allow(np.full((1, n), np.nan, dtype))


def test_non_contiguous_input_is_made_contiguous():
    check = InputValidator([TensorSpec(name="x", dtype="float32", shape=["batch", 4])])
    x = np.arange(32, dtype=np.float32).reshape(8, 4)[::2]
    feed, _ = check(x)
    assert feed["x"].flags.c_contiguous and np.array_equal(feed["x"], x)


def test_metrics_count_every_call_from_many_threads():
    m = Metrics()
    per, threads = 3000, 4

    def work():
        for i in range(per):
            m.record_call(1e-4, error=i % 10 == 0)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    snap = m.snapshot(reset=True)
    assert snap.calls == per * threads and snap.errors == per * threads // 10
    assert snap.p50_ms == pytest.approx(0.1, rel=0.05)
    assert m.snapshot().calls == 0


def test_repeated_shape_fast_path_keeps_every_check():
    check = InputValidator([TensorSpec(name="x", dtype="float32", shape=["batch", 4])])
    x = np.ones((2, 4), np.float32)
    assert check(x)[1] == {"batch": 2} and check(x)[0]["x"] is x  # second call: memo
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(InputError, match="contains NaN"):
        check(bad)
    with pytest.raises(InputError, match="dimension 1 must be 4"):
        check(np.ones((2, 5), np.float32))
    with pytest.raises(InputError, match="expected dtype float32, got int64"):
        check(np.ones((2, 4), np.int64))
    strided = np.ones((2, 8), np.float32)[:, ::2]  # same shape, not contiguous
    assert check(strided)[0]["x"].flags.c_contiguous
    assert check(np.ones((2, 4)))[0]["x"].dtype == np.float32  # float64 -> float32


def test_nan_check_reads_byte_order_and_strides():
    from edgefleet.sdk._validate import _has_nan

    swapped = np.ones((2, 4), ">f4")
    swapped[1, 2] = np.nan
    assert _has_nan(swapped)
    strided = np.ones((8, 4), np.float32)[::2]
    strided[3, 3] = np.nan
    assert _has_nan(strided)
    assert not _has_nan(np.ones((8, 4), np.float64)[::2])


def test_nan_check_can_be_turned_off_and_every_other_check_stays():
    spec = TensorSpec(name="x", dtype="float32", shape=["batch", 4])
    check = InputValidator([spec], check_nan=False)
    x = np.full((2, 4), np.nan, np.float32)
    assert check(x)[0]["x"] is x
    with pytest.raises(InputError, match="dimension 1 must be 4"):
        check(np.ones((2, 5), np.float32))
    with pytest.raises(InputError, match="expected dtype float32"):
        check(np.ones((2, 4), np.int64))
