"""Single files of a registered package for per-device downloads: manifest.json and the
paths the manifest lists, with Range, behind the same tickets and tokens as the package."""

from __future__ import annotations

import hashlib
import json
import time
import zipfile

import pytest

from tests.support.text_models import make_encoder_package


@pytest.fixture(scope="module")
def encoder(live, signing_keys, tmp_path_factory):
    pkg = make_encoder_package(
        tmp_path_factory.mktemp("pf") / "enc.efpkg", name="enc-files", signing_key=signing_keys[0],
        extra=(("encoder.int8.onnx", "int8"),),
    )  # fmt: skip
    with live.client(live.operator) as c:
        r = c.post("/api/v1/models", files={"file": ("e.efpkg", pkg.read_bytes())})
        assert r.status_code == 201, r.text
    return pkg


def test_manifest_and_files_with_range(live, encoder):
    base = "/api/v1/artifacts/enc-files/1.0.0/files"
    with zipfile.ZipFile(encoder) as z:
        want_manifest = z.read("manifest.json")
        art = z.read("artifacts/encoder.int8.onnx")
    with live.client(live.viewer) as c:
        r = c.get(f"{base}/manifest.json")
        assert r.status_code == 200 and r.content == want_manifest
        m = json.loads(r.content)
        sha = {a["path"]: a["sha256"] for a in m["artifacts"]}
        r = c.get(f"{base}/artifacts/encoder.int8.onnx")
        assert hashlib.sha256(r.content).hexdigest() == sha["artifacts/encoder.int8.onnx"]
        part = c.get(f"{base}/artifacts/encoder.int8.onnx", headers={"Range": "bytes=100-"})
        assert part.status_code == 206 and part.content == art[100:]
        for bad in ("slot.json", "artifacts%2F..%2Fmanifest.json", "artifacts/nope.onnx"):
            r = c.get(f"{base}/{bad}")
            assert r.status_code == 404, (bad, r.status_code)
        assert c.get("/api/v1/artifacts/enc-files/9.9.9/files/manifest.json").status_code == 404


def test_files_need_the_same_ticket_or_token(live, encoder):
    from edgefleet.fleet._command_sender import download_ticket

    path = "/api/v1/artifacts/enc-files/1.0.0/files/manifest.json"
    with live.client() as c:
        assert c.get(path).status_code == 401
        exp = int(time.time()) + 60
        t = download_ticket(
            live.service.rollouts.commands.ticket_secret, "dev-1", "enc-files", "1.0.0", exp
        )
        ok = {"device": "dev-1", "exp": exp, "ticket": t}
        assert c.get(path, params=ok).status_code == 200
        assert c.get(path, params={**ok, "device": "dev-2"}).status_code == 401
        # a ticket for another package does not open this one's files
        t2 = download_ticket(
            live.service.rollouts.commands.ticket_secret, "dev-1", "tiny", "1.0.0", exp
        )
        assert c.get(path, params={**ok, "ticket": t2}).status_code == 401
