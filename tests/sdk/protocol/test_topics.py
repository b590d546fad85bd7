import pytest
from edgefleet.sdk import protocol as p


def test_builders_make_design_topics():
    assert p.state_topic("pi-7") == "edgefleet/v1/devices/pi-7/state"
    assert p.inventory_topic("pi-7") == "edgefleet/v1/devices/pi-7/inventory"
    assert p.cmd_topic("a.b_c-1") == "edgefleet/v1/devices/a.b_c-1/cmd"
    assert p.events_topic("x") == "edgefleet/v1/devices/x/events"
    assert p.telemetry_topic("x") == "edgefleet/v1/devices/x/telemetry"
    assert p.fleet_state_topic() == "edgefleet/v1/fleet/state"


def test_filters():
    assert p.device_filter("state") == "edgefleet/v1/devices/+/state"
    assert p.shared_filter("telemetry") == "$share/fleet/edgefleet/v1/devices/+/telemetry"
    assert p.shared_filter("events", group="r2") == "$share/r2/edgefleet/v1/devices/+/events"
    with pytest.raises(p.ProtocolError):
        p.shared_filter("events", group="a/b")
    with pytest.raises(p.ProtocolError):
        p.device_filter("secrets")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", ["", "a/b", "+", "#", "dev ice", "x" * 65, "é", "..", ".", None, 7, "a\x00b"]
)
def test_bad_device_ids_refused(bad):
    assert not p.is_valid_device_id(bad) or bad in (".", "..")
    with pytest.raises(p.ProtocolError, match="invalid device id"):
        p.state_topic(bad)


def test_valid_device_id_limits():
    assert p.validate_device_id("x" * 64) == "x" * 64


def test_parse_roundtrip():
    for kind in p.DEVICE_KINDS:
        info = p.parse_topic(p.device_topic("dev-1", kind))
        assert (info.kind, info.device_id) == (kind, "dev-1")
    assert p.parse_topic(p.FLEET_STATE_TOPIC) == p.TopicInfo(kind="fleet_state")


@pytest.mark.parametrize(
    "topic",
    [
        "edgefleet/v1/devices/+/state",
        "edgefleet/v1/devices/a/b/state",
        "edgefleet/v2/devices/a/state",
        "edgefleet/v1/devices/a/unknown",
        "other/topic",
        "",
    ],
)
def test_parse_refuses(topic):
    with pytest.raises(p.ProtocolError):
        p.parse_topic(topic)
