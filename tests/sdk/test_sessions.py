"""Thread-safe predict with a bounded session pool (real LiteRT interpreters)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from edgefleet.sdk import ConfigError, LoadOptions, load
from edgefleet.sdk._sessions import SessionPool


@pytest.mark.parametrize("backend", ["litert", "executorch"])
def test_concurrent_predicts_share_a_bounded_pool(reference_package, backend):
    pytest.importorskip({"litert": "ai_edge_litert", "executorch": "executorch"}[backend])
    x = reference_package.golden_inputs["input"]
    want = reference_package.reference
    with load(reference_package.path, backend, LoadOptions(sessions=3, warmup=0)) as model:
        rows = [x[i % len(x) : i % len(x) + 1] for i in range(48)]
        with ThreadPoolExecutor(8) as pool:
            outs = list(pool.map(lambda r: model.predict({"input": r})["logits"], rows))
        for i, out in enumerate(outs):
            np.testing.assert_allclose(out[0], want[i % len(x)], atol=1e-4)
        assert 1 <= model._pool.created <= 3  # bounded, grown on demand
        assert model.metrics.snapshot().calls == 48


class _Session:
    def __init__(self, log: list) -> None:
        self.log, self.busy, self.closed = log, threading.Lock(), False

    def run(self, feed):
        assert self.busy.acquire(blocking=False), "a session was shared by two threads"
        try:
            self.log.append(id(self))
            time.sleep(0.02)
            return feed
        finally:
            self.busy.release()

    def close(self) -> None:
        self.closed = True


def test_pool_never_exceeds_its_size_and_closes_every_session():
    used: list[int] = []
    made: list[_Session] = []

    def factory() -> _Session:
        made.append(_Session(used))
        return made[-1]

    pool = SessionPool(factory(), factory, size=2)

    def call(_):
        with pool.acquire() as s:
            return s.run(1)

    with ThreadPoolExecutor(6) as ex:
        assert list(ex.map(call, range(12))) == [1] * 12
    assert pool.created == 2 and len(set(used)) == 2 and pool.waits > 0
    pool.close()
    assert all(s.closed for s in made)


def test_session_count_is_checked():
    with pytest.raises(ConfigError, match="sessions: expected an integer >= 1, got 0"):
        LoadOptions(sessions=0)
