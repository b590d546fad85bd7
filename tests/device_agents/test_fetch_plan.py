"""Per-device download over real HTTP: only the chosen artifact's files, resumable, each
checked against the signed manifest; a server without single files -> whole package."""

from __future__ import annotations

import uuid
import zipfile
from pathlib import Path

import pytest
from edgefleet.device_agents import ModelStore
from edgefleet.sdk import (
    BackendUnavailableError,
    PackageError,
    SignatureError,
    TrustPolicy,
    open_package,
)

from tests.device_agents.support import ArtifactServer, deploy_cmd
from tests.support.text_models import make_encoder_package

pytest.importorskip("onnxruntime")

EXTRA = (("encoder.int8.onnx", "int8"), ("encoder.fp16.onnx", "fp16"))


@pytest.fixture(scope="module")
def served(tmp_path_factory, signing_keys):
    """The encoder package (three artifacts) served as a whole and file by file."""
    d = tmp_path_factory.mktemp("fetch")
    pkg = make_encoder_package(
        d / "enc.efpkg", signing_key=signing_keys[0], extra=EXTRA, vocab=2000, hidden=32
    )
    server = ArtifactServer()
    url, data = server.add(pkg)
    base = url.removeprefix(f"http://127.0.0.1:{server.httpd.server_address[1]}")
    with zipfile.ZipFile(pkg) as z:
        for name in z.namelist():
            server.files[f"{base}/files/{name}"] = z.read(name)
    yield server, url, data, pkg, base
    server.close()


def _fetch(cmd, dest: Path, keys, **kw):
    from edgefleet.device_agents._fetch_plan import FetchOptions, fetch_for_device

    opts = FetchOptions(policy=TrustPolicy.device(keys), profile="x86_64-cpu", **kw)
    return fetch_for_device(cmd, dest, opts)


def test_only_the_chosen_artifact_is_fetched_and_resumed(served, signing_keys, tmp_path):
    server, url, data, pkg, base = served
    cmd = deploy_cmd("dev", url, data, pkg, None)
    server.requests.clear()
    server.cut_after = 30_000  # the artifact response is cut once: resumed with Range
    res = _fetch(cmd, tmp_path / "p", signing_keys[1], retries=3)
    paths = [r["path"].removeprefix(f"{base}/files/") for r in server.requests]
    assert paths[0] == "manifest.json"
    assert "artifacts/encoder.int8.onnx" in paths and "artifacts/encoder.fp16.onnx" not in paths
    resumed = [r for r in server.requests if r["range"]]
    assert resumed and resumed[0]["path"].endswith("encoder.int8.onnx")
    assert res.artifacts == ("encoder.int8.onnx",)
    assert res.bytes_planned < 1.05 * res.artifact_bytes
    with open_package(res.root, TrustPolicy.device(signing_keys[1])) as held:
        assert [a.name for a in held.present_artifacts()] == ["encoder.int8.onnx"]


def test_tampered_file_and_foreign_manifest_are_refused(served, signing_keys, tmp_path):
    server, url, data, pkg, base = served
    cmd = deploy_cmd("dev", url, data, pkg, None)
    key = f"{base}/files/golden/inputs.npz"
    good = server.files[key]
    server.files[key] = good[:-1] + bytes([good[-1] ^ 1])
    try:
        with pytest.raises(PackageError, match=r"golden/inputs.npz does not match the signed"):
            _fetch(cmd, tmp_path / "t", signing_keys[1], retries=0)
    finally:
        server.files[key] = good
    from edgefleet.sdk import generate_keypair

    _, other_pub = generate_keypair(tmp_path / "k", "other")
    with pytest.raises(SignatureError, match="not among the trusted keys"):
        _fetch(cmd, tmp_path / "s", other_pub)
    # a device whose runtimes cannot run any artifact
    with pytest.raises(BackendUnavailableError):
        _fetch(cmd, tmp_path / "b", signing_keys[1], backend="litert")


def test_server_without_single_files_means_whole_package(served, signing_keys, tmp_path):
    server, _, data, pkg, _ = served
    url, data = server.add(pkg)  # a new URL with no /files/ behind it
    cmd = deploy_cmd("dev", url, data, pkg, None)
    assert _fetch(cmd, tmp_path / "w", signing_keys[1]) is None


def test_agent_deploys_a_partial_package(make_agent, served, fleet_key):
    """The agent's deploy path: per-file fetch, staging of the partial package, smoke test,
    activation; the slot holds one artifact of three."""
    from tests.device_agents.support import wait_until

    server, url, data, pkg, _ = served
    agent = make_agent(install=None)
    cmd = deploy_cmd(agent.settings.device_id, url, data, pkg, fleet_key,
                     deployment_id=uuid.uuid4().hex[:12])  # fmt: skip
    rec = agent.deployer.deploy(cmd)
    assert rec.state.value == "ACTIVE", rec.reason
    slot = agent.store.active_dir()
    assert sorted(p.name for p in (slot / "artifacts").iterdir()) == ["encoder.int8.onnx"]
    wait_until(lambda: agent.store.active_slot() is not None, 5, what="active slot")


@pytest.mark.broker
@pytest.mark.slow
def test_kill_during_a_per_device_download_resumes(
    tmp_path, mosquitto, collector, artifacts, packages, signing_keys, fleet_key
):
    """kill -9 while fetching single files (and after): the restarted agent resumes from
    the files already verified and ends ACTIVE on the new model."""
    import subprocess

    from edgefleet.sdk import protocol as p

    from tests.device_agents.support import wait_until
    from tests.device_agents.test_crash import _Device, _serving

    url, data = artifacts.add(packages["v2"])
    base = url.removeprefix(f"http://127.0.0.1:{artifacts.httpd.server_address[1]}")
    with zipfile.ZipFile(packages["v2"]) as z:
        for name in z.namelist():
            artifacts.files[f"{base}/files/{name}"] = z.read(name)
    devices = [
        _Device(tmp_path, f, mosquitto, packages, signing_keys)
        for f in ("during:DOWNLOADING", "after:DOWNLOADING")
    ]
    try:
        cmds = {}
        for d in devices:
            wait_until(
                lambda d=d: any(s.online for s in collector.of(p.State, d.device_id)[-1:]),
                60,
                what=f"{d.fault} online",
            )
            cmds[d.fault] = cmd = deploy_cmd(
                d.device_id, url, data, packages["v2"], fleet_key, health_window_s=0.2
            )
            collector.publish(p.cmd_topic(d.device_id), p.encode(cmd))
        for d in devices:
            try:
                assert d.proc.wait(120) == 137, d.tail()
            except subprocess.TimeoutExpired:
                pytest.fail(f"agent not killed at {d.fault}; " + d.tail())
            assert _serving(d.store_dir, signing_keys[1]) == 0, d.tail()  # still the old one
            d.proc = _start_again(d)
        for d in devices:
            got = collector.wait_terminal(d.device_id, cmds[d.fault].deployment_id, timeout=40)
            assert got == "ACTIVE", d.tail()
            assert _serving(d.store_dir, signing_keys[1]) == 1, d.tail()
            slot = ModelStore(d.store_dir).active_dir()
            assert (slot / "partial.json").is_file(), "expected a per-device (partial) package"
        paths = [r["path"] for r in artifacts.requests if r["path"].startswith(base)]
        assert f"{base}/files/manifest.json" in paths and base not in paths  # never the .efpkg
    finally:
        for d in devices:
            d.stop()


def _start_again(d):
    from tests.device_agents.test_crash import _start

    return _start(d.config, d.log)
