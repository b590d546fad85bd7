"""Every runtime backend loads the real reference artifacts and agrees with torch."""

from __future__ import annotations

import numpy as np
import pytest
from edgefleet.sdk import (
    BackendError,
    BackendUnavailableError,
    ConfigError,
    InputError,
    LoadOptions,
    load,
    open_package,
)
from edgefleet.sdk.backends import (
    ExecuTorchOptions,
    LiteRTOptions,
    MockOptions,
    OnnxRuntimeOptions,
    TorchOptions,
    get_backend,
)

# backend -> (artifact format, module that must be importable here)
RUNTIMES = {
    "onnxruntime": ("onnx", "onnxruntime"),
    "litert": ("tflite", "ai_edge_litert"),
    "executorch": ("pte", "executorch"),
    "torch": ("pt2", "torch"),
}
ATOL = 1e-4


def _artifact(pkg, fmt):
    return next(a for a in pkg.manifest.artifacts if a.format == fmt)


def _load_session(reference_package, backend, options=None):
    fmt, module = RUNTIMES[backend]
    pytest.importorskip(module)
    pkg = open_package(reference_package.path)
    a = _artifact(pkg, fmt)
    m = pkg.manifest
    return get_backend(backend).load(
        pkg.artifact_path(a), a, list(m.inputs), list(m.outputs), options
    ), a


@pytest.mark.parametrize("backend", list(RUNTIMES))
def test_backend_session_agrees_with_torch(reference_package, backend):
    sess, artifact = _load_session(reference_package, backend)
    x = reference_package.golden_inputs["input"]
    step = artifact.fixed_batch or len(x)
    try:
        got = np.concatenate(
            [sess.run({"input": x[i : i + step]})["logits"] for i in range(0, len(x), step)]
        )
    finally:
        sess.close()
    assert got.dtype == np.float32 and got.shape == reference_package.reference.shape
    np.testing.assert_allclose(got, reference_package.reference, atol=ATOL, rtol=1e-3)
    assert [s.name for s in sess.output_specs()] == ["logits"]


@pytest.mark.parametrize("backend", list(RUNTIMES))
def test_model_predict_on_each_backend(reference_package, backend):
    """Through the public API: batch of 4 (split for fixed-batch artifacts), golden smoke test."""
    pytest.importorskip(RUNTIMES[backend][1])
    with load(reference_package.path, backend=backend) as model:
        assert model.info.backend == backend
        out = model.predict(reference_package.golden_inputs["input"])
        np.testing.assert_allclose(out["logits"], reference_package.reference, atol=ATOL)
        assert model.smoke_test().passed


def test_golden_outputs_agree_across_runtimes(reference_package):
    pkg = open_package(reference_package.path)
    outs = [pkg.golden_outputs(a)["logits"] for a in pkg.manifest.artifacts]
    assert len(outs) == 4
    for o in outs:
        np.testing.assert_allclose(o, reference_package.reference, atol=ATOL)
    # Different inputs give different logits: the model is not degenerate.
    assert np.abs(reference_package.reference[0] - reference_package.reference[1]).max() > 1e-3


def test_onnxruntime_options_take_effect(reference_package):
    opts = OnnxRuntimeOptions(
        providers=("CPUExecutionProvider",),
        intra_op_threads=1,
        inter_op_threads=1,
        graph_optimization="disable",
    )
    sess, _ = _load_session(reference_package, "onnxruntime", opts)
    so = sess.session_options
    assert sess.providers == ["CPUExecutionProvider"]
    assert so.intra_op_num_threads == 1 and so.inter_op_num_threads == 1
    assert so.graph_optimization_level.name == "ORT_DISABLE_ALL"
    x = reference_package.golden_inputs["input"]
    np.testing.assert_allclose(
        sess.run({"input": x})["logits"], reference_package.reference, atol=ATOL
    )


def test_onnxruntime_default_providers_end_with_cpu(reference_package):
    sess, _ = _load_session(reference_package, "onnxruntime")
    assert sess.providers[-1] == "CPUExecutionProvider"
    assert "AzureExecutionProvider" not in sess.providers


def test_onnxruntime_unavailable_provider_is_a_config_error(reference_package):
    with pytest.raises(ConfigError, match="CUDAExecutionProvider.*this build offers"):
        _load_session(
            reference_package,
            "onnxruntime",
            OnnxRuntimeOptions(providers=("CUDAExecutionProvider",)),
        )


def test_onnxruntime_runtime_failure_is_wrapped(reference_package):
    sess, _ = _load_session(reference_package, "onnxruntime")
    with pytest.raises(BackendError, match="onnxruntime failed running model.fp32.onnx"):
        sess.run({"input": np.zeros((1, 1, 8, 8), dtype=np.float64)})


def test_litert_options_reach_the_interpreter(reference_package, monkeypatch):
    from edgefleet.sdk.backends import _litert

    module, real_cls, load_delegate = _litert.import_interpreter()
    seen = {}

    def spy(**kwargs):
        seen.update(kwargs)
        return real_cls(**kwargs)

    monkeypatch.setattr(_litert, "import_interpreter", lambda: (module, spy, load_delegate))
    sess, _ = _load_session(reference_package, "litert", LiteRTOptions(num_threads=1))
    assert seen["num_threads"] == 1 and seen["experimental_delegates"] is None
    x = reference_package.golden_inputs["input"][:1]
    np.testing.assert_allclose(
        sess.run({"input": x})["logits"], reference_package.reference[:1], atol=ATOL
    )


def test_litert_missing_delegate_is_a_clear_error(reference_package, tmp_path):
    with pytest.raises(BackendError, match="could not load delegate .*libnope.so"):
        _load_session(
            reference_package, "litert", LiteRTOptions(delegates=(str(tmp_path / "libnope.so"),))
        )


def test_litert_static_batch_mismatch_is_an_input_error(reference_package):
    sess, _ = _load_session(reference_package, "litert")
    with pytest.raises(InputError, match=r"expects shape \[1, 1, 8, 8\].*got \[2, 1, 8, 8\]"):
        sess.run({"input": np.zeros((2, 1, 8, 8), dtype=np.float32)})


def test_executorch_unknown_method(reference_package):
    with pytest.raises(BackendError, match=r"no method 'nope'.*\['forward'\]"):
        _load_session(reference_package, "executorch", ExecuTorchOptions(method="nope"))


def test_torch_threads_option(reference_package):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        _load_session(reference_package, "torch", TorchOptions(num_threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("backend", list(RUNTIMES))
def test_corrupt_artifact_is_a_clear_error(reference_package, backend, tmp_path):
    fmt, module = RUNTIMES[backend]
    pytest.importorskip(module)
    pkg = open_package(reference_package.path)
    a = _artifact(pkg, fmt)
    bad = tmp_path / f"bad.{fmt}"
    bad.write_bytes(b"\x00not a model at all" * 8)
    m = pkg.manifest
    with pytest.raises(BackendError, match=f"{backend} could not load {a.name}"):
        get_backend(backend).load(bad, a, list(m.inputs), list(m.outputs), None)


@pytest.mark.parametrize("backend", list(RUNTIMES))
def test_wrong_options_type_is_a_config_error(reference_package, backend):
    with pytest.raises(ConfigError, match=f"backend '{backend}' takes .*got MockOptions"):
        _load_session(reference_package, backend, MockOptions())


@pytest.mark.parametrize("backend", list(RUNTIMES))
def test_missing_runtime_names_the_extra(reference_package, backend, monkeypatch):
    from edgefleet.sdk.backends import _common

    monkeypatch.setattr(_common, "module_available", lambda name: False)
    b = get_backend(backend)
    reason = b.available()
    assert reason is not None and f"edgefleet[{backend if backend != 'torch' else 'trainer'}]" in (
        reason
    )
    if backend == "litert":
        return  # litert tries each runtime at load; covered by the next test
    pkg = open_package(reference_package.path)
    a = _artifact(pkg, RUNTIMES[backend][0])
    with pytest.raises(BackendUnavailableError, match=r"pip install 'edgefleet\["):
        b.load(pkg.artifact_path(a), a, list(pkg.manifest.inputs), list(pkg.manifest.outputs), None)


def test_litert_with_no_runtime_importable(monkeypatch):
    from edgefleet.sdk.backends import _litert

    def fail(name):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(_litert.importlib, "import_module", fail)
    with pytest.raises(BackendUnavailableError, match=r"ai_edge_litert.*edgefleet\[litert\]"):
        _litert.import_interpreter()


def test_unknown_backend():
    with pytest.raises(BackendUnavailableError, match="unknown backend 'nope'.*onnxruntime"):
        get_backend("nope")


def test_load_with_unknown_backend_name(reference_package):
    with pytest.raises(BackendUnavailableError, match="nope"):
        load(reference_package.path, backend="nope", options=LoadOptions(warmup=0))


@pytest.mark.parametrize("backend", list(RUNTIMES))
def test_read_only_and_strided_inputs(reference_package, backend):
    """Cached outputs and broadcast views are read-only; torch-based runtimes must not warn."""
    sess, _ = _load_session(reference_package, backend)
    x = np.ascontiguousarray(reference_package.golden_inputs["input"][:1])
    x.setflags(write=False)
    np.testing.assert_allclose(
        sess.run({"input": x})["logits"], reference_package.reference[:1], atol=ATOL
    )
    strided = np.repeat(x, 2, axis=3)[..., ::2]  # same values, non-contiguous
    assert not strided.flags.c_contiguous
    np.testing.assert_allclose(
        sess.run({"input": strided})["logits"], reference_package.reference[:1], atol=ATOL
    )


@pytest.mark.parametrize("backend", list(RUNTIMES))
def test_sessions_are_safe_to_share_between_threads(reference_package, backend):
    from concurrent.futures import ThreadPoolExecutor

    sess, _ = _load_session(reference_package, backend)
    assert sess.thread_safe
    xs = reference_package.golden_inputs["input"]

    def one(i):
        return i, sess.run({"input": xs[i : i + 1]})["logits"]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, [i % len(xs) for i in range(40)]))
    for i, got in results:
        np.testing.assert_allclose(got, reference_package.reference[i : i + 1], atol=ATOL)


@pytest.mark.parametrize(
    ("backend", "options", "message"),
    [
        ("onnxruntime", OnnxRuntimeOptions(intra_op_threads=0), "intra_op_threads must be"),
        ("onnxruntime", OnnxRuntimeOptions(graph_optimization="max"), "graph_optimization must"),
        ("onnxruntime", OnnxRuntimeOptions(providers="CPUExecutionProvider"), "a tuple of"),
        ("litert", LiteRTOptions(num_threads=-2), "num_threads must be a positive int"),
        ("torch", TorchOptions(num_threads=True), "num_threads must be a positive int"),
    ],
)
def test_bad_option_values_are_config_errors(reference_package, backend, options, message):
    with pytest.raises(ConfigError, match=message):
        _load_session(reference_package, backend, options)
