import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from edgefleet.sdk import protocol as p

GOLDEN = Path(__file__).parent / "golden"
V2 = sorted((GOLDEN / "v2").glob("*.json"))
V1 = sorted((GOLDEN / "v1").glob("*.json"))


def test_golden_files_exist_for_every_message_type():
    types = {json.loads(f.read_text())["payload"]["type"] for f in V2}
    assert types == set().union(*p.ALLOWED_TYPES.values())
    assert len(V1) >= 3


@pytest.mark.parametrize("path", V2, ids=lambda f: f.stem)
def test_golden_current_roundtrip(path):
    doc = json.loads(path.read_text())
    raw = json.dumps(doc["payload"]).encode()
    msg = p.decode(doc["topic"], raw)
    assert msg.schema_version == p.PROTOCOL_SCHEMA_VERSION
    assert json.loads(p.encode(msg)) == doc["payload"]
    assert p.decode(doc["topic"], p.encode(msg)) == msg


@pytest.mark.parametrize("path", V1, ids=lambda f: f.stem)
def test_golden_previous_version_decodes(path):
    doc = json.loads(path.read_text())
    msg = p.decode(doc["topic"], json.dumps(doc["payload"]).encode())
    assert msg.schema_version == p.PROTOCOL_SCHEMA_VERSION
    dumped = json.loads(p.encode(msg))
    for key, value in doc["expect"].items():
        assert dumped[key] == value, key


def test_v1_command_refused():
    doc = json.loads((GOLDEN / "v2" / "cmd_cancel.json").read_text())
    doc["payload"]["schema_version"] = 1
    with pytest.raises(p.ProtocolError, match="commands must be schema_version 2"):
        p.decode(doc["topic"], json.dumps(doc["payload"]))


def _state(dev="d1"):
    return p.State(device_id=dev, online=True)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"", "empty payload"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"{not json", "not UTF-8 JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'{"type": "state"}', "no schema_version"),
        (b'{"schema_version": 2}', "no 'type'"),
        (b'{"schema_version": 99, "type": "state"}', "unsupported schema_version 99"),
        (b'{"schema_version": 2, "type": "nope"}', "invalid 'nope' message"),
        (b'{"schema_version": 2, "type": "state", "device_id": "d1"}', "online"),
        (b" " * (p.MAX_PAYLOAD_BYTES + 1), "over the"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_payloads_give_clear_errors(payload, match):
    with pytest.raises(p.ProtocolError, match=match):
        p.decode(p.state_topic("d1"), payload)


def test_type_must_belong_on_topic_and_device_must_match():
    with pytest.raises(p.ProtocolError, match="does not belong on a 'cmd' topic"):
        p.decode(p.cmd_topic("d1"), p.encode(_state()))
    with pytest.raises(p.ProtocolError, match="arrived on the topic of 'd2'"):
        p.decode(p.state_topic("d2"), p.encode(_state("d1")))


def test_extra_fields_and_naive_timestamps_refused():
    data = json.loads(p.encode(_state()))
    with pytest.raises(p.ProtocolError, match="Extra inputs"):
        p.decode(p.state_topic("d1"), json.dumps({**data, "evil": 1}))
    with pytest.raises(p.ProtocolError, match="timezone-aware"):
        p.decode(p.state_topic("d1"), json.dumps({**data, "ts": "2026-01-01T00:00:00"}))


def test_encode_refuses_oversized_batch():
    sample = p.TelemetrySample(ts=datetime.now(UTC), model="m" * 200)
    batch = p.TelemetryBatch(device_id="d1", seq=0, samples=[sample] * 1000)
    with pytest.raises(p.ProtocolError, match="fewer samples"):
        p.encode(batch)


def test_schema_file_is_current():
    assert p.SCHEMA_PATH.read_text() == p.schema_text(), (
        "sdk/protocol/schema.json is stale: run python -m edgefleet.sdk.protocol --write"
    )
    schema = json.loads(p.SCHEMA_PATH.read_text())
    assert "cmd.deploy" in json.dumps(schema["discriminator"])
