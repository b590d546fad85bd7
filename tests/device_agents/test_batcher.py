"""Dynamic micro-batching on the local endpoint: real HTTP clients, real ONNX Runtime."""

from __future__ import annotations

import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pytest
from edgefleet.device_agents import (
    ActiveModel,
    BatchingOptions,
    LocalEndpoint,
    MicroBatcher,
    Overloaded,
)
from edgefleet.device_agents._batcher import batchable
from edgefleet.sdk import ConfigError, TrustPolicy, load

from tests.device_agents.support import installed_store
from tests.support.endpoint import npy_bytes, post_inputs, post_tensor


def _pooling_package(out: Path) -> Path:
    """Several typed inputs (int64 ids, bool mask, float32 scale), a dynamic sequence length
    and two outputs: pooled = sum(ids * mask) * scale, count = sum(mask); no labels."""
    from edgefleet.sdk import PackageBuilder, TensorSpec
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Cast", ["ids"], ["idsf"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["mask"], ["maski"], to=TensorProto.INT64),
        helper.make_node("Mul", ["idsf", "maskf"], ["prod"]),
        helper.make_node("ReduceSum", ["prod", "axes"], ["s"], keepdims=1),
        helper.make_node("Mul", ["s", "scale"], ["pooled"]),
        helper.make_node("ReduceSum", ["maski", "axes"], ["count"], keepdims=1),
    ]
    dims = ["batch", "sequence"]
    graph = helper.make_graph(
        nodes, "pool",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, dims),
         helper.make_tensor_value_info("mask", TensorProto.BOOL, dims),
         helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 1]),
         helper.make_tensor_value_info("count", TensorProto.INT64, ["batch", 1])],
        initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    feed = _feed(3, 5, seed=0)
    with (
        TemporaryDirectory() as tmp,
        PackageBuilder(
            "pool", "1.0.0",
            inputs=[TensorSpec(name="ids", dtype="int64", shape=dims),
                    TensorSpec(name="mask", dtype="bool", shape=dims),
                    TensorSpec(name="scale", dtype="float32", shape=["batch", 1])],
            outputs=[TensorSpec(name="pooled", dtype="float32", shape=["batch", 1]),
                     TensorSpec(name="count", dtype="int64", shape=["batch", 1])],
        ) as b,
    ):  # fmt: skip
        path = Path(tmp) / "pool.onnx"
        path.write_bytes(model.SerializeToString())
        b.set_golden_inputs(feed)
        b.add_artifact(path, format="onnx", precision="fp32", golden_outputs=_reference(feed))
        return b.build(out)


def _feed(rows: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "ids": rng.integers(0, 30000, (rows, seq), dtype=np.int64),
        "mask": rng.random((rows, seq)) > 0.3,
        "scale": rng.random((rows, 1)).astype(np.float32),
    }


def _reference(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    s = (feed["ids"].astype(np.float32) * feed["mask"]).sum(axis=1, keepdims=True)
    return {
        "pooled": (s * feed["scale"]).astype(np.float32),
        "count": feed["mask"].sum(axis=1, keepdims=True).astype(np.int64),
    }


@pytest.fixture(scope="module")
def pool_store(tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    return installed_store(d, _pooling_package(d / "pool.efpkg"))


def _post_npz(url: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A binary request and answer (application/x-npz), as a C or Go client would send."""
    buf = io.BytesIO()
    np.savez(buf, **feed)
    kind = "application/x-npz"
    code, answer_kind, data = post_tensor(url, buf.getvalue(), kind, kind)
    assert (code, answer_kind) == (200, kind), data
    with np.load(io.BytesIO(data)) as z:
        return {k: z[k] for k in z.files}


def test_concurrent_clients_get_their_own_rows_from_shared_batches(pool_store):
    """12 clients at once, sequence lengths 4 and 7 (never mixed in one batch), a long
    deadline so batches really form: each answer equals that client's own reference."""
    active = ActiveModel(pool_store, trust=TrustPolicy.workstation())
    ep = LocalEndpoint(active, "127.0.0.1:0", BatchingOptions(max_batch=6, max_delay_us=200_000))
    ep.start()
    feeds = [_feed(1 + i % 2, 4 if i % 3 else 7, seed=i + 1) for i in range(12)]
    try:
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda f: post_inputs(ep.address, f), feeds))
        for feed, (code, body, _) in zip(feeds, answers, strict=True):
            assert code == 200, body
            want = _reference(feed)
            np.testing.assert_allclose(body["outputs"]["pooled"], want["pooled"], rtol=1e-6)
            assert body["outputs"]["count"] == want["count"].tolist()
        stats = ep.batcher.stats()
        assert stats["batched_rows"] == sum(f["ids"].shape[0] for f in feeds)
        assert stats["batches"] < 12 and stats["mean_batch"] > 1.5, stats
    finally:
        ep.stop()
        active.close()


def test_binary_clients_share_batches_and_keep_their_dtypes(pool_store):
    """.npz bodies (int64 ids, a bool mask, float32 scale) batch like JSON ones; each
    client gets its own rows back with the model's output dtypes."""
    active = ActiveModel(pool_store, trust=TrustPolicy.workstation())
    ep = LocalEndpoint(active, "127.0.0.1:0", BatchingOptions(max_batch=8, max_delay_us=200_000))
    ep.start()
    feeds = [_feed(1 + i % 3, 6, seed=40 + i) for i in range(8)]
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda f: _post_npz(ep.address, f), feeds))
        for feed, got in zip(feeds, answers, strict=True):
            want = _reference(feed)
            assert got["count"].dtype == np.int64 and got["pooled"].dtype == np.float32
            np.testing.assert_array_equal(got["count"], want["count"])
            np.testing.assert_allclose(got["pooled"], want["pooled"], rtol=1e-6)
        assert ep.batcher.stats()["batches"] < len(feeds), ep.batcher.stats()
        # one array for a model of three inputs
        code, _, data = post_tensor(ep.address, npy_bytes(feeds[0]["ids"]), "application/x-npy")
        assert code == 400 and "send application/x-npz" in json.loads(data)["error"]
    finally:
        ep.stop()
        active.close()


def test_a_bad_request_in_a_batch_costs_only_its_own_answer(pool_store):
    active = ActiveModel(pool_store, trust=TrustPolicy.workstation())
    ep = LocalEndpoint(active, "127.0.0.1:0", BatchingOptions(max_batch=8, max_delay_us=200_000))
    ep.start()
    good = [_feed(1, 5, seed=i) for i in range(3)]
    bad = dict(_feed(1, 5, seed=9))
    bad["scale"] = np.ones((1, 3), dtype=np.float32)  # declared [batch, 1]
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda f: post_inputs(ep.address, f), [*good, bad]))
        for feed, (code, body, _) in zip(good, answers[:3], strict=True):
            assert code == 200, body
            assert body["outputs"]["count"] == _reference(feed)["count"].tolist()
        code, body, _ = answers[3]
        assert code == 400 and "scale" in body["error"]
    finally:
        ep.stop()
        active.close()


def test_only_dynamic_batch_models_are_batched(pool_store, tmp_path):
    from tests.support.packages import make_package

    with load(pool_store.slot_dir(pool_store.pointer().slot)) as dynamic:
        assert batchable(dynamic)
    fixed_pkg = tmp_path / "fixed"
    from edgefleet.sdk import PackageBuilder, TensorSpec

    from tests.support.packages import tiny_inputs, tiny_onnx, tiny_reference

    x = tiny_inputs(1)
    with PackageBuilder(
        "fixed", "1.0.0",
        inputs=[TensorSpec(name="input", dtype="float32", shape=[1, x.shape[1]])],
        outputs=[TensorSpec(name="logits", dtype="float32", shape=[1, 10])],
    ) as b:  # fmt: skip
        b.set_golden_inputs({"input": x})
        b.add_artifact(tiny_onnx(tmp_path / "m.onnx", batch=1), format="onnx",
                       precision="fp32", golden_outputs={"logits": tiny_reference(x)})  # fmt: skip
        b.build(fixed_pkg)
    with load(fixed_pkg) as fixed, load(make_package(tmp_path / "t.efpkg")) as tiny:
        assert not batchable(fixed) and batchable(tiny)
        batcher = MicroBatcher(BatchingOptions(max_batch=4, max_delay_us=1000))
        try:
            out = batcher.submit(fixed, {"input": x})  # passes straight through
            np.testing.assert_allclose(out["logits"], tiny_reference(x), atol=1e-4)
            assert batcher.stats()["batches"] == 0
        finally:
            batcher.stop()


class _SlowModel:
    """Logic test double: a dynamic-batch model whose runs wait for a gate."""

    def __init__(self) -> None:
        from edgefleet.sdk import TensorSpec

        spec = TensorSpec(name="x", dtype="float32", shape=["batch", 2])
        self.info = type(
            "Info",
            (),
            {
                "inputs": [spec],
                "outputs": [spec],
                "name": "slow",
                "artifact": type("A", (), {"fixed_batch": None})(),
            },
        )()
        self.gate = threading.Event()
        self.calls: list[int] = []
        self.running = threading.Semaphore(0)  # released as each call starts

    def predict(self, feed):
        self.running.release()
        self.gate.wait(10)
        self.calls.append(feed["x"].shape[0])
        if (feed["x"] < 0).any():
            raise ValueError("negative input")
        return {"x": feed["x"] * 2}


def test_a_failing_batch_is_rerun_one_by_one():
    model = _SlowModel()
    model.gate.set()
    batcher = MicroBatcher(BatchingOptions(max_batch=3, max_delay_us=500_000))
    rows = [np.full((1, 2), v, dtype=np.float32) for v in (1.0, -1.0, 3.0)]
    try:
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(batcher.submit, model, {"x": r}) for r in rows]
            assert futures[0].result(10)["x"].tolist() == [[2.0, 2.0]]
            with pytest.raises(ValueError, match="negative"):
                futures[1].result(10)
            assert futures[2].result(10)["x"].tolist() == [[6.0, 6.0]]
        assert model.calls == [3, 1, 1, 1] and batcher.stats()["batch_fallbacks"] == 1
    finally:
        batcher.stop()


def test_a_full_queue_sheds_instead_of_queueing():
    model = _SlowModel()
    batcher = MicroBatcher(BatchingOptions(max_batch=2, max_delay_us=0, max_queue=2))
    x = np.ones((1, 2), dtype=np.float32)
    try:
        with ThreadPoolExecutor(3) as pool:
            running = pool.submit(batcher.submit, model, {"x": x})
            deadline = time.monotonic() + 5
            while batcher.queued() and time.monotonic() < deadline:
                time.sleep(0.01)  # the first request is taken by the worker (blocked)
            queued = [pool.submit(batcher.submit, model, {"x": x}) for _ in range(2)]
            while batcher.queued() < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            with pytest.raises(Overloaded) as e:
                batcher.submit(model, {"x": x})
            assert e.value.retry_after_s > 0
            model.gate.set()
            for f in (running, *queued):
                assert f.result(10)["x"].tolist() == [[2.0, 2.0]]
        assert model.calls == [1, 2]  # the two queued requests ran as one batch
    finally:
        batcher.stop()


def test_workers_run_batches_at_once():
    """Two workers: while one batch is inside the runtime the next one runs too, and
    every request still gets its own rows."""
    model = _SlowModel()
    batcher = MicroBatcher(BatchingOptions(max_batch=2, max_delay_us=100_000, workers=2))
    rows = [np.full((1, 2), v, dtype=np.float32) for v in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(batcher.submit, model, {"x": r}) for r in rows]
            assert model.running.acquire(timeout=10) and model.running.acquire(timeout=10)
            model.gate.set()  # both batches were in predict at once before this
            for v, f in enumerate(futures):
                assert f.result(10)["x"].tolist() == [[2.0 * v, 2.0 * v]]
        assert sum(model.calls) == 4 and batcher.stats()["batched_rows"] == 4
    finally:
        batcher.stop()


def test_rows_that_came_together_are_shared_by_the_idle_workers():
    """8 rows queued at once, 2 idle workers, max_batch 16: 4 each (one taking all 8 would
    leave the other's core idle)."""
    model = _SlowModel()
    batcher = MicroBatcher(BatchingOptions(max_batch=16, max_delay_us=500_000, workers=2))
    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [
                pool.submit(batcher.submit, model, {"x": np.full((1, 2), v, np.float32)})
                for v in range(8)
            ]
            assert model.running.acquire(timeout=10) and model.running.acquire(timeout=10)
            model.gate.set()
            assert [f.result(10)["x"][0, 0] for f in futures] == [2.0 * v for v in range(8)]
        assert sorted(model.calls) == [4, 4], model.calls
    finally:
        batcher.stop()


def test_batching_options_are_checked():
    with pytest.raises(ConfigError, match="max_queue >= 1"):
        BatchingOptions(max_queue=0)
    with pytest.raises(ConfigError, match="workers >= 1"):
        BatchingOptions(workers=0)


def test_agent_settings_configure_the_endpoint_batcher(make_agent):
    """batch_* settings reach the running agent's endpoint, which batches real requests."""
    from tests.support.packages import tiny_inputs, tiny_reference

    agent = make_agent(batch_max_size=8, batch_max_delay_us=100_000, batch_workers=2)
    batcher = agent.endpoint.batcher
    assert batcher.options == BatchingOptions(8, 100_000, workers=2)
    xs = [tiny_inputs(1, seed=s) for s in range(6)]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda x: post_inputs(agent.endpoint.address, {"input": x}), xs))
    for x, (code, body, _) in zip(xs, answers, strict=True):
        assert code == 200, body
        np.testing.assert_allclose(body["outputs"]["logits"], tiny_reference(x), atol=1e-4)
    assert batcher.stats()["batched_rows"] == 6 and batcher.stats()["batches"] < 6
