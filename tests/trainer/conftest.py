"""One real ``edgefleet train`` run per session (few epochs), shared by the e2e tests.

The int8 ExecuTorch exporter is made to fail in that run, so the tests can check that a
failed format is recorded in the manifest and the report while the others still ship.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

FORCED_FAILURE = "forced failure for the test: XNNPACK int8 lowering unavailable"

# The built-in recipe with fewer epochs: enough for >0.95 held-out accuracy.
_TEST_RECIPE_OVERRIDES = {
    "epochs = 10": "epochs = 6",
    "finetune_epochs = 3": "finetune_epochs = 2",
    "latency_runs = 30": "latency_runs = 10",
    "calibration_samples = 128": "calibration_samples = 64",
}


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models train fastest on one thread; two threads spin against each other (and
    against other processes) on a 2-core box, measured 0.2 s per MLP backward under load."""
    try:
        import torch
    except ImportError:  # recipe tests still run without torch
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass(frozen=True)
class TrainRun:
    out: Path
    package: Path
    recipe: Path
    public_key: Path
    stdout: str
    exit_code: int
    seconds: float


@pytest.fixture(scope="session")
def trained(tmp_path_factory, signing_keys) -> TrainRun:
    pytest.importorskip("torch")
    from edgefleet.trainer import _export, builtin_recipe
    from typer.testing import CliRunner

    from edgefleet._cli import _register, app

    tmp = tmp_path_factory.mktemp("train")
    text = builtin_recipe("digits").read_text()
    for old, new in _TEST_RECIPE_OVERRIDES.items():
        assert old in text, old
        text = text.replace(old, new)
    recipe = tmp / "digits.toml"
    recipe.write_text(text)
    real_pte = _export.EXPORTERS["pte"]

    def failing_pte(model, sample, out, *, int8=False, **kw):
        if int8:
            raise RuntimeError(FORCED_FAILURE)
        return real_pte(model, sample, out, int8=int8, **kw)

    _register("train")
    priv, pub = signing_keys
    t0 = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(_export.EXPORTERS, "pte", failing_pte)
        res = CliRunner().invoke(
            app, ["train", str(recipe), "--out", str(tmp / "out"), "--key", str(priv), "-q"]
        )
    seconds = time.perf_counter() - t0
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return TrainRun(tmp / "out", tmp / "out" / "digits-1.0.0.efpkg", recipe, pub,
                    res.output, res.exit_code, seconds)  # fmt: skip
