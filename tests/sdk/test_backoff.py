"""The one jittered backoff every retry and reconnect uses."""

from __future__ import annotations

import random
import time

import pytest
from edgefleet.sdk import Backoff, ConfigError


def test_delays_grow_within_jittered_bounds_and_cap():
    b = Backoff(0.5, 4.0, rng=random.Random(1))
    ceilings = []
    for _ in range(8):
        ceiling = b.ceiling
        d = b.next()
        assert ceiling / 2 <= d <= ceiling
        ceilings.append(ceiling)
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.ceiling == 0.5 and b.attempts == 0
    for _ in range(10_000):  # no overflow however long a broker stays away
        b.next()
    assert b.ceiling == 4.0


def test_a_fleet_does_not_retry_in_lockstep():
    # 200 agents' first retries after a broker restart: spread, not one instant.
    firsts = [Backoff(1.0, 30.0).next() for _ in range(200)]
    assert len({round(d, 3) for d in firsts}) > 150
    assert max(firsts) - min(firsts) > 0.4


@pytest.mark.parametrize(
    "kwargs",
    [{"min_s": 0}, {"min_s": 2, "max_s": 1}, {"factor": 0.5}, {"jitter": 1.5}],
)
def test_bad_settings_say_what_was_expected(kwargs):
    with pytest.raises(ConfigError, match="expected"):
        Backoff(**kwargs)


def test_agent_links_to_a_dead_broker_retry_at_spread_times():
    """Real paho clients on the agent's Mux, connecting to a port nothing listens on."""
    import paho.mqtt.client as mqtt
    from edgefleet.device_agents import Mux
    from edgefleet.device_agents._mux import Link

    from tests.support.mosquitto import free_port

    port = free_port()
    mux = Mux(tick_s=0.05)
    links = [
        mux.add(Link(mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"c{i}"),
                     "127.0.0.1", port, 30, min_delay=0.2, max_delay=1.0))
        for i in range(20)
    ]  # fmt: skip
    mux.start()
    try:
        time.sleep(1.0)
    finally:
        mux.stop()
    assert all(link.backoff.attempts >= 2 for link in links)
    due = [link.next_attempt for link in links]
    assert len({round(d, 3) for d in due}) > 15, "reconnects in lockstep"
