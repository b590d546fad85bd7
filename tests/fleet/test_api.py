"""HTTP API: auth (401/403), registry upload checks, devices, artifact Range, errors."""

from __future__ import annotations

import hashlib

import pytest

from tests.support.waiting import wait_until

from .fake_device import FakeDevice


@pytest.fixture(scope="module")
def uploaded(live):
    with live.client(live.operator) as c:
        for key in ("v1", "v2", "broken"):
            data = live.packages[key].read_bytes()
            r = c.post("/api/v1/models", files={"file": ("p.efpkg", data)})
            assert r.status_code in (201, 409), r.text
    return live


def test_missing_token_is_401_and_wrong_role_is_403(live):
    with live.client() as c:
        r = c.get("/api/v1/devices")
        assert r.status_code == 401
        assert "Bearer" in r.headers["www-authenticate"]
    with live.client("eft_nope_bad") as c:
        assert c.get("/api/v1/devices").status_code == 401
    with live.client(live.viewer) as c:
        assert c.get("/api/v1/devices").status_code == 200
        r = c.post("/api/v1/tokens", json={"role": "admin"})
        assert r.status_code == 403
        assert "admin role" in r.json()["detail"]
    with live.client(live.operator) as c:
        assert c.post("/api/v1/devices", json={"id": "x1"}).status_code == 403


def test_tokens_are_stored_hashed_and_revocable(live):
    with live.client(live.admin) as c:
        r = c.post("/api/v1/tokens", json={"role": "viewer", "name": "tmp"})
        assert r.status_code == 201
        token = r.json()["token"]
        tid = token.split("_", 2)[1]
        rows = {t.id: t for t in live.service.tokens.list()}
        assert token.split("_", 2)[2] not in rows[tid].secret_hash  # the whole secret
        assert rows[tid].secret_hash.startswith("$argon2id$")
        with live.client(token) as v:
            assert v.get("/api/v1/models").status_code == 200
            assert c.delete(f"/api/v1/tokens/{tid}").status_code == 204
            assert v.get("/api/v1/models").status_code == 401


def test_upload_checks_signature_and_rejects_duplicates(uploaded, live):
    with live.client(live.operator) as c:
        r = c.post(
            "/api/v1/models", files={"file": ("u.efpkg", live.packages["unsigned"].read_bytes())}
        )
        assert r.status_code == 400
        assert "not signed" in r.json()["detail"]
        r = c.post("/api/v1/models", files={"file": ("x.efpkg", b"not a zip")})
        assert r.status_code == 400
        assert "efpkg" in r.json()["detail"]
        r = c.post("/api/v1/models", files={"file": ("p.efpkg", live.packages["v1"].read_bytes())})
        assert r.status_code == 409
        models = c.get("/api/v1/models").json()
        assert {"1.0.0", "2.0.0", "3.0.0"} <= {m["version"] for m in models}
        one = c.get("/api/v1/models/tiny/versions/1.0.0").json()
        assert one["artifacts"][0]["format"] == "onnx"
        assert c.get("/api/v1/models/tiny/versions/9.9.9").status_code == 404


def test_tampered_package_is_rejected(live, tmp_path):
    import zipfile

    src = live.packages["v1"]
    bad = tmp_path / "bad.efpkg"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith(".onnx"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            zout.writestr(info, data)
    with live.client(live.operator) as c:
        r = c.post("/api/v1/models", files={"file": ("bad.efpkg", bad.read_bytes())})
    assert r.status_code == 400
    assert "sha256" in r.json()["detail"]


def test_artifact_download_supports_range_and_needs_a_token(uploaded, live):
    data = live.packages["v1"].read_bytes()
    url = "/api/v1/artifacts/tiny/1.0.0"
    with live.client() as c:
        assert c.get(url).status_code == 401
    with live.client(live.viewer) as c:
        full = c.get(url)
        assert full.status_code == 200
        assert hashlib.sha256(full.content).hexdigest() == hashlib.sha256(data).hexdigest()
        part = c.get(url, headers={"Range": "bytes=100-"})
        assert part.status_code == 206
        assert part.content == data[100:]
        assert part.headers["content-range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
        assert c.get(url, headers={"Range": f"bytes={len(data) + 5}-"}).status_code == 416


def test_device_provisioning_token_downloads(uploaded, live):
    with live.client(live.admin) as c:
        r = c.post("/api/v1/devices", json={"id": "prov-1", "tags": ["lab"]})
        assert r.status_code == 201, r.text
        token = r.json()["download_token"]
        assert r.json()["mqtt_username"] == "prov-1"
        assert c.post("/api/v1/devices", json={"id": "bad/id"}).status_code == 422
    url = "/api/v1/artifacts/tiny/1.0.0"
    with live.client(token) as d:
        assert d.get(url, params={"device": "prov-1"}).status_code == 200
        assert d.get(url, params={"device": "other"}).status_code == 401
    with live.client(live.admin) as c:
        assert c.delete("/api/v1/devices/prov-1").status_code == 200
        assert c.get("/api/v1/devices").json() == [
            d for d in c.get("/api/v1/devices").json() if d["id"] != "prov-1"
        ]
    with live.client(token) as d:
        assert d.get(url, params={"device": "prov-1"}).status_code == 401
    passwd = (live.service.settings.data_dir / "mqtt" / "passwd").read_text()
    assert "prov-1:" not in passwd


def test_bad_requests_get_4xx_with_reason(uploaded, live):
    with live.client(live.operator) as c:
        r = c.post(
            "/api/v1/rollouts",
            json={"name": "x", "model": "tiny", "version": "1.0.0", "target": {}},
        )
        assert r.status_code == 422
        assert "target needs" in str(r.json()["detail"])
        r = c.post(
            "/api/v1/rollouts",
            json={
                "name": "x",
                "model": "tiny",
                "version": "1.0.0",
                "target": {"device_ids": ["ghost"]},
            },
        )
        assert r.status_code == 400
        assert "ghost" in r.json()["detail"]
        assert c.get("/api/v1/rollouts/999999").status_code == 404
        assert c.post("/api/v1/rollouts/1/explode").status_code == 404  # no such action
        assert c.get("/api/v1/telemetry", params={"since": "nan"}).status_code in (400, 422)
        assert (
            c.post(
                "/api/v1/rollouts", content=b"{", headers={"content-type": "application/json"}
            ).status_code
            == 422
        )


def test_health_and_metrics(live):
    with live.client() as c:
        h = c.get("/health").json()
        assert h["status"] == "ok" and h["mqtt_connected"] is True
        text = c.get("/metrics").text
        assert "# TYPE edgefleet_fleet_devices gauge" in text
        assert "edgefleet_fleet_http_requests_total" in text


def test_devices_register_from_mqtt(live, fleet_pub, package_pub, mosquitto):
    dev = FakeDevice("auto-1", mosquitto.port, fleet_pub, package_pub, tags=("lab",)).start()
    try:
        with live.client(live.viewer) as c:
            assert wait_until(lambda: c.get("/api/v1/devices/auto-1").status_code == 200)
            assert wait_until(lambda: c.get("/api/v1/devices/auto-1").json()["online"])
            d = c.get("/api/v1/devices/auto-1").json()
            assert d["profile"] == "x86_64-cpu" and d["tags"] == ["lab"]
    finally:
        dev.stop()
