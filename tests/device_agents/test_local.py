"""Local pieces: settings, the A/B store, load_active, the local endpoint, import hygiene."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from edgefleet.device_agents import (
    ActiveModel,
    AgentSettings,
    LocalEndpoint,
    ModelStore,
    NoActiveModelError,
    load_active,
)
from edgefleet.sdk import ConfigError, PackageError, TrustPolicy

from tests.support.endpoint import call, npy_bytes, post_inputs, post_tensor
from tests.support.imports import modules_loaded_by
from tests.support.packages import tiny_inputs, tiny_reference


def test_settings_toml_env_and_errors(tmp_path, monkeypatch):
    conf = tmp_path / "agent.toml"
    conf.write_text('device_id = "pi-1"\nbroker_url = "mqtts://fleet.lan:8883"\n'
                    "telemetry_interval_s = 5\n")  # fmt: skip
    s = AgentSettings.load(conf)
    assert (s.device_id, s.broker_host, s.broker_port, s.use_tls) == (
        "pi-1", "fleet.lan", 8883, True,
    )  # fmt: skip
    monkeypatch.setenv("EDGEFLEET_AGENT_TELEMETRY_INTERVAL_S", "2.5")
    assert AgentSettings.load(conf).telemetry_interval_s == 2.5  # env beats the file
    assert AgentSettings.load(conf, telemetry_interval_s=1.0).telemetry_interval_s == 1.0
    with pytest.raises(ConfigError, match="does not exist"):
        AgentSettings.load(tmp_path / "missing.toml")
    for bad in ({"device_id": "a/b"}, {"broker_url": "http://x"}, {"fault_point": "boom"}):
        with pytest.raises(ConfigError, match="invalid agent settings"):
            AgentSettings.load(conf, **bad)


@pytest.fixture
def store(tmp_path, packages, signing_keys):
    s = ModelStore(tmp_path / "store")
    s.install(packages["v1"], TrustPolicy.device(signing_keys[1]))
    return s


def test_store_ab_switch_and_guards(store, packages, signing_keys, tmp_path):
    policy = TrustPolicy.device(signing_keys[1])
    assert store.active_slot() == "A" and store.pointer().generation == 1
    with pytest.raises(PackageError, match="active slot"):
        store.stage("A", packages["v2"], policy, "d1")
    info = store.stage("B", packages["v2"], policy, "d1")
    assert (info.slot, info.package_version, info.active) == ("B", "2.0.0", False)
    assert store.active_slot() == "A"  # staging never touches the active slot
    ptr = store.activate("B")
    assert (ptr.slot, ptr.previous, ptr.generation) == ("B", "A", 2)
    assert [i.active for i in store.slots()] == [False, True]
    with pytest.raises(PackageError):
        store.stage("B", packages["v1"], policy, "d2")
    # A package signed by an untrusted key never reaches a slot.
    with pytest.raises(PackageError):
        store.stage("A", packages["untrusted"], policy, "d3")
    assert store.slot_info("A") is not None  # the failed stage left the old slot alone
    assert not list((store.root / "slots").glob(".*"))


def test_store_repair_falls_back_when_pointer_slot_is_empty(store, packages, signing_keys):
    import shutil

    store.stage("B", packages["v2"], TrustPolicy.device(signing_keys[1]), "d1")
    shutil.rmtree(store.slot_dir("A"))  # disks lie
    assert store.active_slot() is None
    store.repair()
    assert store.active_slot() == "B"


def test_load_active_follows_activation(store, packages, signing_keys):
    policy = TrustPolicy.device(signing_keys[1])
    handle = load_active(store, trust=policy, check_interval_s=0.0)
    x = tiny_inputs(2, seed=3)
    assert np.allclose(handle.predict(x)["logits"], tiny_reference(x, 0), atol=1e-4)
    store.stage("B", packages["v2"], policy, "d1")
    store.activate("B")
    assert np.allclose(handle.predict(x)["logits"], tiny_reference(x, 1), atol=1e-4)
    assert handle.info.version == "2.0.0"
    handle.close()
    empty = ActiveModel(ModelStore(store.root.parent / "empty"))
    with pytest.raises(NoActiveModelError, match="nothing deployed"):
        empty.predict(x)


def test_local_endpoint(store, signing_keys):
    active = ActiveModel(store, trust=TrustPolicy.device(signing_keys[1]))
    ep = LocalEndpoint(active, "127.0.0.1:0").start()
    try:
        x = tiny_inputs(2, seed=4)
        code, body, _ = post_inputs(ep.address, {"input": x})
        assert code == 200
        assert np.allclose(body["outputs"]["logits"], tiny_reference(x, 0), atol=1e-4)
        health = call(f"{ep.address}/v1/health")[:2]
        assert health == (200, {"status": "ok", "model": "tiny@1.0.0"})
        code, info, _ = call(f"{ep.address}/v1/model")
        assert code == 200 and info["inputs"][0]["name"] == "input"
        code, body, _ = call(f"{ep.address}/v1/predict", {"inputs": {"input": [[1.0, 2.0]]}})
        assert code == 400 and "input" in body["error"]
        assert call(f"{ep.address}/v1/predict", b"not json")[0] == 400
        assert call(f"{ep.address}/v1/predict", {"nope": 1})[0] == 400
        assert call(f"{ep.address}/v1/nothing")[0] == 404
        assert call(f"{ep.address}/v1/metrics")[1]["calls"] >= 2
        assert ep.traffic() == (1, 0)  # only successful/ runtime-failed calls count
        # finite inputs whose outputs overflow: strict JSON (no NaN/Infinity tokens), null
        huge = np.full((1, 16), 3e38, np.float32)
        code, _, data = post_tensor(ep.address, npy_bytes(huge), "application/x-npy")
        logits = json.loads(data, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
        row = logits["outputs"]["logits"][0]
        assert code == 200 and None in row, row
        npy = "application/x-npy"
        raw = np.load(io.BytesIO(post_tensor(ep.address, npy_bytes(huge), npy, npy)[2]))[0]
        assert [v is None for v in row] == [not np.isfinite(v) for v in raw]  # .npy keeps them
    finally:
        ep.stop()
        active.close()


def test_local_endpoint_binary_bodies(store, signing_keys):
    """.npy/.npz requests and answers give the JSON path's numbers; a malformed body is a
    400 naming the format expected, never a 500."""
    import socket
    import zipfile

    active = ActiveModel(store, trust=TrustPolicy.device(signing_keys[1]))
    ep = LocalEndpoint(active, "127.0.0.1:0").start()
    npy, npz = "application/x-npy", "application/x-npz"
    x = tiny_inputs(3, seed=5)
    want = tiny_reference(x, 0)
    try:
        code, kind, data = post_tensor(ep.address, npy_bytes(x), npy)  # JSON answer by default
        assert (code, kind) == (200, "application/json")
        assert np.allclose(json.loads(data)["outputs"]["logits"], want, atol=1e-4)
        code, kind, data = post_tensor(ep.address, npy_bytes(np.asfortranarray(x)), npy, npy)
        assert (code, kind) == (200, npy)
        assert np.allclose(np.load(io.BytesIO(data)), want, atol=1e-4)
        buf = io.BytesIO()
        np.savez_compressed(buf, input=x)
        code, kind, data = post_tensor(ep.address, buf.getvalue(), npz, npz)
        assert (code, kind) == (200, npz)
        with np.load(io.BytesIO(data)) as z:
            assert z.files == ["logits"] and np.allclose(z["logits"], want, atol=1e-4)

        bad = {
            (b"not a tensor", npy): "expected a .npy body",
            (npy_bytes(x)[:-4], npy): "bytes, got",
            (npy_bytes(x) + b"\0", npy): "bytes, got",
            (npy_bytes(np.array([{"a": 1}], dtype=object)), npy): "pickles",
            (npy_bytes(x.astype(np.int64)), npy): "expected dtype float32",
            (npy_bytes(x[0]), npy): "input",
            # the agent loads with check_nan on: requests come from other processes
            (npy_bytes(np.where(x > 0.5, np.nan, x).astype(np.float32)), npy): "contains NaN",
            (b"PK junk", npz): "expected a .npz body",
            (npy_bytes(x), npz): "expected a .npz body",
        }
        for (body, kind), reason in bad.items():
            code, ctype, data = post_tensor(ep.address, body, kind)
            assert code == 400 and ctype == "application/json", (reason, code, data)
            assert reason in json.loads(data)["error"], data
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("input.txt", "1 2 3")
        code, _, data = post_tensor(ep.address, buf.getvalue(), npz)
        assert code == 400 and "not .npy arrays" in json.loads(data)["error"]
        # a body shorter than its Content-Length (the client hung up half-way)
        host, port = ep.address.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: " + npy.encode()
                      + b"\r\nContent-Length: 1000\r\n\r\n" + npy_bytes(x)[:100])  # fmt: skip
            s.shutdown(socket.SHUT_WR)
            reply = s.makefile("rb").read()
        assert reply.startswith(b"HTTP/1.1 400") and b"ended after 100" in reply, reply
        assert ep.traffic() == (3, 0)
    finally:
        ep.stop()
        active.close()


def test_local_endpoint_keeps_connections_alive(store):
    """HTTP/1.1: one connection carries many requests; a request whose body the endpoint
    did not read (unknown path) closes it, so those bytes are never parsed as a request."""
    import http.client

    active = ActiveModel(store, trust=TrustPolicy.workstation())
    ep = LocalEndpoint(active, "127.0.0.1:0").start()
    host, port = ep.address.removeprefix("http://").split(":")
    x = tiny_inputs(1, seed=6)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for _ in range(3):
            conn.request("POST", "/v1/predict", npy_bytes(x), {"Content-Type": "application/x-npy"})
            r = conn.getresponse()
            assert r.status == 200 and r.getheader("Connection") is None
            np.testing.assert_allclose(
                json.loads(r.read())["outputs"]["logits"], tiny_reference(x, 0), atol=1e-4
            )
        sock = conn.sock
        conn.request("POST", "/v1/nowhere", b"GET /v1/health HTTP/1.1\r\n\r\n")
        r = conn.getresponse()
        assert (r.status, r.getheader("Connection")) == (404, "close")
        r.read()
        assert sock is not None and conn.sock is None  # closed, not reused
        # a connection kept open across stop() gets a 503, not a reloaded model
        conn.request("GET", "/v1/health")
        assert conn.getresponse().read() and conn.sock is not None
        ep.stop()
        active.close()
        conn.request("GET", "/v1/health")
        r = conn.getresponse()
        assert (r.status, json.loads(r.read())) == (503, {"error": "the endpoint is stopping"})
        assert active.loaded is None
    finally:
        conn.close()
        ep.stop()
        active.close()


def test_local_endpoint_on_unix_socket(store, tmp_path):
    import http.client
    import socket

    sock_path = tmp_path / "agent.sock"
    ep = LocalEndpoint(ActiveModel(store), f"unix:{sock_path}").start()

    class UnixConn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(str(sock_path))

    try:
        conn = UnixConn("localhost")
        conn.request(
            "POST", "/v1/predict", json.dumps({"inputs": {"input": tiny_inputs(1).tolist()}})
        )
        r = conn.getresponse()
        assert r.status == 200 and len(json.loads(r.read())["outputs"]["logits"][0]) == 10
        conn.close()
    finally:
        ep.stop()
        ep.active.close()


def test_agent_imports_no_torch_fastapi_sqlalchemy():
    statement = (
        "import edgefleet.device_agents, edgefleet.device_agents._cli\n"
        "from edgefleet.device_agents import _agent, _simulate, _endpoint, _tensor_body"
    )
    assert modules_loaded_by(statement, ("torch", "fastapi", "sqlalchemy")) == []


def test_systemd_unit_is_shipped_and_runs_the_agent():
    import configparser

    from edgefleet.device_agents.systemd import UNIT

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read_string(UNIT.read_text())
    exec_start = unit["Service"]["ExecStart"]
    assert "-m edgefleet.device_agents run --config /etc/edgefleet/agent.toml" in exec_start
    assert unit["Service"]["KillSignal"] == "SIGTERM" and unit["Service"]["Restart"] == "always"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_install_cli_and_clear_errors(tmp_path, packages, signing_keys):
    from edgefleet.device_agents._cli import app
    from typer.testing import CliRunner

    runner = CliRunner()
    ok = runner.invoke(app, ["install", str(packages["v1"]), "--data-dir", str(tmp_path),
                             "--package-key", str(signing_keys[1])])  # fmt: skip
    assert ok.exit_code == 0 and "tiny 1.0.0 in slot A" in ok.output
    bad = runner.invoke(app, ["install", str(packages["untrusted"]), "--data-dir",
                              str(tmp_path), "--package-key", str(signing_keys[1])])  # fmt: skip
    assert bad.exit_code == 2 and "not among the trusted" in " ".join(bad.output.split())
    assert ModelStore(tmp_path / "store").active_slot() == "A"
    missing = runner.invoke(app, ["run", "--config", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "does not exist" in " ".join(missing.output.split())


def test_configured_profile_picks_the_runtime_options(make_agent):
    """A profile set in the agent's config (a board detection cannot name, or a simulated
    device) is the one serving loads with, not this machine's."""
    agent = make_agent(profile="raspberry-pi-4")
    info = agent.active.refresh(force=True).info
    assert info.profile == "raspberry-pi-4"
    assert info.backend == "onnxruntime"  # the package has only ONNX: the Pi's second choice
