"""Multi-process training through torchrun: two real processes, gloo on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")


def test_torchrun_two_processes_train_and_the_checkpoint_feeds_the_pipeline(tmp_path):
    # torchrun's own module, under this interpreter (a console script may point elsewhere).
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    ckpt = tmp_path / "ckpt.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*torchrun, "--standalone", "--nproc-per-node", "2",
         "-m", "edgefleet.trainer.ddp", "digits", "--out", str(ckpt), "--epochs", "3"],
        capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    # both ranks really ran, each on its half of the data
    assert "rank 0/2: trained on 673 of 1347" in proc.stdout
    assert "rank 1/2: trained on 673 of 1347" in proc.stdout
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2
    assert summary["accuracy"] > 0.8
    assert ckpt.is_file() and not ckpt.with_suffix(".tmp").exists()

    from edgefleet.trainer import load_recipe, train_model
    from edgefleet.trainer._train import evaluate

    model, ds = train_model(load_recipe("digits"), checkpoint=ckpt)
    assert evaluate(model, ds.x_test, ds.y_test) == pytest.approx(summary["accuracy"])
