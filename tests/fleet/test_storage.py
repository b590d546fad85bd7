"""The S3-compatible artifact store, against a real S3 HTTP server (moto's server mode):
uploads land in the bucket, device downloads are redirected to presigned URLs, and the
agent's resumable downloader follows them with HTTP Range."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest

from tests.fleet.conftest import ADMIN, UvicornThread
from tests.support.mosquitto import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3_server():
    pytest.importorskip("boto3", reason="the S3 store needs boto3 (edgefleet[s3])")
    server_mod = pytest.importorskip("moto.server", reason="the S3 test server is moto[server]")
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def s3_env(s3_server, monkeypatch):
    import boto3

    for k, v in {
        "AWS_ACCESS_KEY_ID": "edgefleet-test",
        "AWS_SECRET_ACCESS_KEY": "edgefleet-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    bucket = f"packages-{time.monotonic_ns()}"
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket=bucket)
    yield s3_server, bucket, s3
    s3.close()


@pytest.fixture()
def s3_fleet(tmp_path, s3_env, signing_keys):
    from edgefleet.fleet import FleetService, FleetSettings, create_app

    endpoint, bucket, s3 = s3_env
    port = free_port()
    settings = FleetSettings(
        data_dir=tmp_path / "fleet",
        port=port,
        mqtt_enabled=False,
        trusted_package_keys=[signing_keys[1]],
        bootstrap_admin_token=ADMIN,
        artifact_store=f"s3://{bucket}/fleet-a",
        s3_endpoint_url=endpoint,
    )
    service = FleetService(settings).start()
    server = UvicornThread(create_app(service), port)
    server.start()
    yield service, f"http://127.0.0.1:{port}", bucket, s3
    server.stop()
    service.stop()


def test_upload_goes_to_the_bucket_and_devices_are_redirected(s3_fleet, fleet_packages, tmp_path):
    from edgefleet.device_agents._download import DownloadSpec, download
    from edgefleet.fleet._command_sender import download_ticket

    service, url, bucket, s3 = s3_fleet
    pkg = fleet_packages["v1"]
    data = pkg.read_bytes()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        r = c.post("/api/v1/models", files={"file": ("p.efpkg", data)})
        assert r.status_code == 201, r.text
    # In the bucket under the configured prefix, byte for byte; nothing on the fleet's disk.
    obj = s3.get_object(Bucket=bucket, Key="fleet-a/tiny/1.0.0.efpkg")["Body"].read()
    assert obj == data
    assert not (service.ctx.settings.data_dir / "packages").exists()

    exp = int(time.time()) + 600
    ticket = download_ticket(
        service.rollouts.commands.ticket_secret, "dev-s3", "tiny", "1.0.0", exp
    )
    art = f"{url}/api/v1/artifacts/tiny/1.0.0?device=dev-s3&exp={exp}&ticket={ticket}"
    r = httpx.get(art)
    assert r.status_code == 307
    endpoint = service.ctx.settings.s3_endpoint_url
    assert r.headers["location"].startswith(f"{endpoint}/{bucket}/fleet-a/")
    # A bad ticket is still refused by the fleet before any redirect.
    assert httpx.get(art.replace(ticket, "0" * len(ticket))).status_code == 401

    # The agent's downloader: resumes a half-downloaded file with Range through the redirect.
    dest = tmp_path / "dl" / "tiny.efpkg"
    dest.parent.mkdir()
    half = len(data) // 2
    dest.with_name(dest.name + ".part").write_bytes(data[:half])
    got = download(DownloadSpec(url=art, size=len(data), token="efd_device-token"), dest)
    assert hashlib.sha256(got.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_unreachable_store_is_a_503_and_nothing_is_registered(
    tmp_path, s3_env, signing_keys, fleet_packages
):
    from edgefleet.fleet import FleetService, FleetSettings
    from edgefleet.fleet._errors import StorageError

    settings = FleetSettings(
        data_dir=tmp_path / "fleet",
        mqtt_enabled=False,
        trusted_package_keys=[signing_keys[1]],
        artifact_store="s3://no-such-bucket-here/x",
        s3_endpoint_url=s3_env[0],
    )
    service = FleetService(settings).start()
    try:
        with pytest.raises(StorageError, match="no-such-bucket-here") as err:
            service.registry.upload(fleet_packages["v1"])
        assert err.value.status_code == 503
        assert service.registry.list() == []  # no registry row for a package not stored
    finally:
        service.stop()


def test_bad_store_url_names_what_is_expected(tmp_path):
    from edgefleet.fleet._errors import StorageError
    from edgefleet.fleet._storage import make_store

    with pytest.raises(StorageError, match=r"expected s3://BUCKET"):
        make_store("s3:///nobucket", tmp_path)
    with pytest.raises(StorageError, match=r"expected a directory or s3://"):
        make_store("ftp://host/x", tmp_path)
