"""The paho-mqtt client of one agent: MQTT 5 or 3.1.1, TLS, credentials, Last Will and a
persistent session (commands sent while the device is offline arrive on reconnect)."""

from __future__ import annotations

from edgefleet.sdk.protocol import state_topic

from ._settings import AgentSettings

__all__ = ["make_client", "connect_kwargs", "refused_v5"]


def make_client(s: AgentSettings, will_payload: bytes, version: str | None = None):
    import paho.mqtt.client as mqtt

    v5 = (version or s.mqtt_version) == "5"
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=s.device_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,  # 3.1.1 persistent session
    )
    if s.username:
        c.username_pw_set(s.username, s.password)
    if s.use_tls:
        c.tls_set(
            ca_certs=str(s.tls_ca) if s.tls_ca else None,
            certfile=str(s.tls_cert) if s.tls_cert else None,
            keyfile=str(s.tls_key) if s.tls_key else None,
        )
        c.tls_insecure_set(s.tls_insecure)
    # The broker publishes this retained "offline" state if we vanish without DISCONNECT.
    c.will_set(state_topic(s.device_id), will_payload, qos=1, retain=True)
    return c


def refused_v5(reason_code) -> bool:
    """True for a CONNACK refusing MQTT 5 itself: a 3.1.1-only broker (amqtt) answers code 1
    "unacceptable protocol version", which paho reports as 132 on a v5 client."""
    return getattr(reason_code, "value", reason_code) in (1, 132)


def connect_kwargs(s: AgentSettings, version: str | None = None) -> dict:
    """MQTT 5: keep the session (clean_start False; paho's default cleans the first one)
    for ``session_expiry_s`` after a disconnect."""
    if (version or s.mqtt_version) != "5":
        return {}
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = s.session_expiry_s
    return {"clean_start": False, "properties": props}
