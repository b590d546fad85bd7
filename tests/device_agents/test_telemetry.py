"""Store-and-forward telemetry: the bounded SQLite queue, and a broker outage under load."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from edgefleet.device_agents import TelemetryQueue
from edgefleet.sdk import protocol as p

from tests.device_agents.support import Collector
from tests.support.mosquitto import Mosquitto
from tests.support.waiting import wait_until

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _sample(i: int) -> p.TelemetrySample:
    return p.TelemetrySample(ts=T0 + timedelta(seconds=i), calls=i)


def test_queue_orders_batches_and_deletes_only_on_ack(tmp_path):
    q = TelemetryQueue(tmp_path / "t.db", "dev-1", max_rows=100)
    for i in range(5):
        q.append(_sample(i))
    b0 = q.next_batch(3)
    assert b0.seq == 0 and [s.calls for s in b0.batch.samples] == [0, 1, 2]
    # Not acknowledged: asking again gives the same batch (same seq), nothing lost.
    again = q.next_batch(3)
    assert again.seq == 0 and again.batch.samples == b0.batch.samples
    q.ack(b0)
    b1 = q.next_batch(3)
    assert b1.seq == 1 and [s.calls for s in b1.batch.samples] == [3, 4]
    q.close()
    # The pending batch survives a restart with its sequence number.
    q = TelemetryQueue(tmp_path / "t.db", "dev-1", max_rows=100)
    b1b = q.next_batch(3)
    assert b1b.seq == 1 and b1b.batch.samples == b1.batch.samples
    q.ack(b1b)
    assert q.next_batch(3) is None and len(q) == 0
    q.close()


def test_queue_bound_drops_oldest_and_counts(tmp_path):
    q = TelemetryQueue(tmp_path / "t.db", "dev-1", max_rows=10)
    for i in range(25):
        q.append(_sample(i))
    assert len(q) == 10 and q.dropped == 15
    b = q.next_batch(100)
    assert [s.calls for s in b.batch.samples] == list(range(15, 25))
    assert b.batch.dropped == 15
    q.close()


@pytest.mark.broker
@pytest.mark.slow
def test_broker_outage_loses_nothing_and_keeps_order(make_agent):
    broker = Mosquitto().start()
    collector = Collector(broker.port, client_id="tel-collector", clean=False)
    try:
        agent = make_agent(install=None, broker=broker, telemetry_interval_s=0.05,
                           local_endpoint=None, telemetry_batch_max=20)  # fmt: skip
        dev = agent.device_id
        wait_until(lambda: len(collector.of(p.TelemetryBatch, dev)) >= 3, what="telemetry")
        broker.stop()
        wait_until(lambda: not agent.connected.is_set(), 10, what="agent to notice")
        time.sleep(1.5)  # samples pile up on disk meanwhile
        assert len(agent.queue) >= 10
        broker.start()
        wait_until(agent.connected.is_set, 15, what="reconnect")
        time.sleep(0.5)
        agent.stop(graceful=False)
        wait_until(lambda: _contiguous(collector.of(p.TelemetryBatch, dev)), 10,
                   what="all batches")  # fmt: skip
        batches = _dedup(collector.of(p.TelemetryBatch, dev))
        samples = [s for b in batches for s in b.samples]
        stamps = [s.ts for s in samples]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        assert all(b.dropped == 0 for b in batches)
        # Roughly one sample per interval over the whole run, outage included: none lost.
        span = (stamps[-1] - stamps[0]).total_seconds()
        assert len(samples) >= 0.5 * span / 0.05, (len(samples), span)
        gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:], strict=False)]
        assert max(gaps) < 1.0, max(gaps)  # no hole where the broker was away
    finally:
        collector.close()
        broker.stop()


def _dedup(batches):
    by_seq = {}
    for b in batches:
        by_seq.setdefault(b.seq, b)
    return [by_seq[k] for k in sorted(by_seq)]


def _contiguous(batches):
    seqs = sorted({b.seq for b in batches})
    return bool(seqs) and seqs == list(range(seqs[0], seqs[-1] + 1)) and seqs[0] == 0
