"""The device-app handle on the active slot: a switch (or a rollback) that happens while
a new slot is loading is seen at once, not after the next pointer check."""

from __future__ import annotations

import numpy as np
from edgefleet.device_agents import ActiveModel, ModelStore
from edgefleet.sdk import TrustPolicy
from edgefleet.sdk.backends import register_backend

from tests.support.packages import tiny_inputs, tiny_reference
from tests.support.wrapped_backend import OnnxRuntimeWrapper

# Called inside a load (the runtime is "slow"): what the agent does meanwhile.
DURING_LOAD: list = []


class SlowLoadBackend(OnnxRuntimeWrapper):
    """ONNX Runtime, but each load first runs (and consumes) the DURING_LOAD callbacks."""

    name = "slowload"

    def before_load(self, artifact) -> None:
        while DURING_LOAD:
            DURING_LOAD.pop(0)()


def _which(handle: ActiveModel) -> int:
    x = tiny_inputs(2, seed=4)
    out = handle.loaded.predict(x)["logits"]
    return next(s for s in (0, 1) if np.allclose(out, tiny_reference(x, s), atol=1e-4))


def test_rollback_during_a_slow_load_is_not_missed(tmp_path, packages, signing_keys):
    register_backend("slowload", f"{__name__}:SlowLoadBackend")
    policy = TrustPolicy.device(signing_keys[1])
    store = ModelStore(tmp_path / "store")
    store.install(packages["v1"], policy)  # slot A, seed 0
    handle = ActiveModel(store, trust=policy, backend="slowload", check_interval_s=3600)
    handle.refresh(force=True)
    assert _which(handle) == 0
    old = store.active_slot()
    store.stage(store.other(old), packages["v2"], policy, "dep-1")
    store.activate(store.other(old))  # the agent switches to v2 ...
    DURING_LOAD.append(lambda: store.activate(old))  # ... and rolls back while it loads
    handle.refresh(force=True)
    assert store.active_slot() == old
    assert _which(handle) == 0, "served the rolled-back slot"
    assert handle._generation == store.pointer().generation
    handle.close()
