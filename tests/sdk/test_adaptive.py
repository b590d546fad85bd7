"""The SDK's AdaptiveModel follows a fake board's resources without the agent."""

from __future__ import annotations

import numpy as np
from edgefleet.sdk import AdaptiveModel, LoadOptions, ResourcePolicy

from tests.support.adaptive_package import two_size_package
from tests.support.fake_board import FakeBoard
from tests.support.packages import tiny_inputs, tiny_reference


def test_adaptive_model_goes_lean_under_pressure_and_back(tmp_path):
    pkg = two_size_package(tmp_path / "adaptive.efpkg")
    board = FakeBoard(tmp_path / "board")
    x = tiny_inputs(3, seed=5)
    opts = LoadOptions(profile="x86_64-cpu")
    with AdaptiveModel(pkg, "onnxruntime", opts, ResourcePolicy(calm_s=0.0), board.root,
                       grace_s=0.1) as m:  # fmt: skip
        assert m.model.info.artifact.name == "model.onnx" and m.check() is None
        board.set(memory=0.9, pressure=20.0)
        assert m.check() == "constrained"
        assert m.model.info.artifact.name == "model.small.onnx"
        assert m.model._session._sess.get_session_options().intra_op_num_threads == 1
        np.testing.assert_allclose(m.predict(x)["logits"], tiny_reference(x), atol=1e-4)
        board.set(memory=0.3, pressure=0.0)
        assert m.check() == "normal" and m.model.info.artifact.name == "model.onnx"
        np.testing.assert_allclose(m.predict(x)["logits"], tiny_reference(x), atol=1e-4)
