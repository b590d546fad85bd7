"""One device-id rule: every entry point that takes a device id refuses the same bad ids
and accepts the same good ones (topics, wire messages, signed commands, the agent's
settings, the fleet's API, MQTT telemetry ingest and broker config)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from edgefleet.sdk import protocol as p
from pydantic import ValidationError

BAD = ["..", ".", "a/b", "+", "#", "", "x" * 65, "é", "dev ice", "a\nb", "ok\n", "a\x00b"]
GOOD = ["x" * 64, "a", "pi-17", "rk3588_01", "a.b", ".hidden", "...", "..x"]
REFUSED = (p.ProtocolError, ValidationError, ValueError)


def _topic(device_id: str) -> None:
    p.state_topic(device_id)


def _parsed_topic(device_id: str) -> None:
    info = p.parse_topic(f"{p.TOPIC_ROOT}/devices/{device_id}/state")
    assert info.device_id == device_id  # "a/b" splits into more levels and is refused


def _message(device_id: str) -> None:
    p.State(device_id=device_id, online=True, agent_version="1")


def _command(device_id: str) -> None:
    now = datetime.now(UTC)
    p.RollbackCommand(
        command_id="c1", device_id=device_id, nonce="n" * 16, issued_at=now,
        expires_at=now + timedelta(seconds=60),
    )  # fmt: skip


def _agent_settings(device_id: str) -> None:
    from edgefleet.device_agents import AgentSettings

    AgentSettings(device_id=device_id)


def _broker_password_file(device_id: str) -> None:
    from edgefleet.fleet import render_password_file

    render_password_file([(device_id, "$7$hash")])


def _telemetry_ingest(device_id: str) -> None:
    from edgefleet.fleet._telemetry_codec import TelemetryDecoder

    batch = p.TelemetryBatch(device_id="dev-1", seq=1, samples=[])
    topic = f"{p.TOPIC_ROOT}/devices/{device_id}/telemetry".encode()
    payload = p.encode(batch.model_copy(update={"device_id": device_id}))
    TelemetryDecoder().rows(topic, payload)


ENTRY_POINTS = [
    _topic,
    _parsed_topic,
    _message,
    _command,
    _agent_settings,
    _broker_password_file,
    _telemetry_ingest,
]


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_bad_device_id_refused_everywhere(entry, bad):
    with pytest.raises(REFUSED, match="device id|topic"):
        entry(bad)


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("good", GOOD, ids=repr)
def test_good_device_id_accepted_everywhere(entry, good):
    entry(good)


def test_one_predicate_and_one_pattern():
    import re

    for v in BAD:
        assert not p.is_valid_device_id(v)
        assert re.fullmatch(p.DEVICE_ID_PATTERN, v) is None
    for v in GOOD:
        assert p.is_valid_device_id(v) and p.validate_device_id(v) == v
        assert re.fullmatch(p.DEVICE_ID_PATTERN, v)
    assert not p.is_valid_device_id(None) and not p.is_valid_device_id(7)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from edgefleet.fleet import FleetService, FleetSettings, create_app
    from fastapi.testclient import TestClient

    admin = "eft_0123456789abcdef_device-id-admin"
    data = tmp_path_factory.mktemp("fleet-ids")
    svc = FleetService(
        FleetSettings(data_dir=data, mqtt_enabled=False, bootstrap_admin_token=admin)
    )
    with TestClient(create_app(svc, manage_lifecycle=True)) as client:
        client.headers["Authorization"] = f"Bearer {admin}"
        yield client


@pytest.mark.parametrize("bad", [b for b in BAD if "/" not in b], ids=repr)
def test_fleet_api_refuses_the_same_ids(api, bad):
    """Provisioning (body), the telemetry filter (query) and a device's page (path): 422,
    the reason naming the field; never a device row or a 500."""
    r = api.post("/api/v1/devices", json={"id": bad})
    assert r.status_code == 422, r.text
    assert api.get("/api/v1/telemetry", params={"device": bad}).status_code == 422
    if bad.strip("."):  # "", "." and ".." are the collection itself in a URL path
        assert api.get(f"/api/v1/devices/{quote(bad, safe='')}").status_code == 422
    assert bad not in {d["id"] for d in api.get("/api/v1/devices").json()}


@pytest.mark.parametrize("good", [".hidden", "..x", "x" * 64], ids=repr)
def test_fleet_api_accepts_the_same_good_ids(api, good):
    assert api.post("/api/v1/devices", json={"id": good}).status_code == 201
    assert api.get(f"/api/v1/devices/{good}").status_code == 200
