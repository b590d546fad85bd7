"""A text-generation package's artifact is chosen as ``load`` runs it, by the functions a
device uses before loading: ``select_artifacts`` (what a per-device download fetches) and
``choose`` (what the staged smoke test loads). Both refused every generative package
("no installed runtime can run package ...") before they asked the generation runtimes."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime_genai")

from edgefleet.sdk import LoadOptions, files_for, load, open_package, select_artifacts
from edgefleet.sdk._select import choose, resolve_profile

from tests.support.llm import tiny_llm

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("profile", ["raspberry-pi-4", "jetson-orin-nano", None])
def test_generative_artifact_is_the_one_load_runs(profile):
    pkg = tiny_llm().package
    with open_package(pkg) as p:
        m = p.manifest
    with load(pkg, options=LoadOptions(cache=None, profile=profile)) as model:
        runs = model.info.artifact.name
    [chosen] = select_artifacts(m, profile=profile)
    assert chosen.name == runs and chosen.format == "ort-genai"
    c = choose(m, backend=None, artifact=None, precision=None,
               profile=resolve_profile(profile), options={})  # fmt: skip
    assert c.artifact.name == runs and c.backend.name == "ort-genai"
    paths = {f.path for f in files_for(m, [chosen])}
    assert any(p.startswith("tokenizer/") for p in paths)  # the device gets its tokenizer
    assert not any(f"{a.name}/" in p for a in m.artifacts if a.name != runs for p in paths)
