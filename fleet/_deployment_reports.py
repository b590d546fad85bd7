"""Device reports applied to rollouts: deployment events and refused commands.

Plain functions on a database session: the caller (the report loop) owns the transaction."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from ._db import RolloutDevice
from ._rollout_machine import IN_FLIGHT, TERMINAL_STATES

__all__ = ["apply_event", "prefetch", "reject", "rollout_of"]

log = logging.getLogger(__name__)


def reject(db: Session, device_id: str, command_id: str, why: str, now: float) -> bool:
    """A device refused a deploy command (signature, expiry, policy): REJECTED."""
    rd = db.scalar(
        select(RolloutDevice).where(
            RolloutDevice.device_id == device_id, RolloutDevice.command_id == command_id
        )
    )
    if rd is None or rd.state in TERMINAL_STATES:
        return False
    rd.state, rd.updated_at, rd.detail = "REJECTED", now, why[:2000]
    return True


def rollout_of(dep_id: str) -> int | None:
    if dep_id.startswith("rollout-") and dep_id[8:].isdigit() and len(dep_id) < 20:
        return int(dep_id[8:])
    return None


def prefetch(db: Session, pairs: set[tuple[int, str]]) -> dict[tuple[int, str], RolloutDevice]:
    """RolloutDevice rows for (rollout id, device id) pairs, in one query per rollout."""
    out: dict[tuple[int, str], RolloutDevice] = {}
    by_rollout: dict[int, list[str]] = {}
    for rid, dev in pairs:
        by_rollout.setdefault(rid, []).append(dev)
    for rid, devs in by_rollout.items():
        stmt = select(RolloutDevice).where(
            RolloutDevice.rollout_id == rid, RolloutDevice.device_id.in_(devs)
        )
        out.update({(rid, rd.device_id): rd for rd in db.scalars(stmt)})
    return out


def apply_event(
    db: Session,
    device_id: str,
    dep_id: str,
    state: str,
    reason: str,
    now: float,
    known: dict[tuple[int, str], RolloutDevice] | None = None,
) -> bool:
    """Record a device's deployment state for the rollout named by ``dep_id``."""
    rid = rollout_of(dep_id)
    if rid is None:
        return False
    if known is not None:
        rd = known.get((rid, device_id))
    else:
        rd = db.get(RolloutDevice, (rid, device_id))
    if rd is None:
        return False
    # Messages can arrive out of order; never move a terminal device back in flight,
    # except ACTIVE -> ROLLED_BACK (failed health window after activation).
    if rd.state in TERMINAL_STATES and state in IN_FLIGHT:
        return False
    if rd.state in TERMINAL_STATES and rd.state != "ACTIVE":
        return False
    if rd.state == state:  # a QoS 1 duplicate (or a re-sent event): nothing new,
        if not reason or reason[:2000] == rd.detail:
            return False
        rd.detail, rd.updated_at = reason[:2000], now  # unless it says why it waits
        return True
    rd.state, rd.updated_at = state, now
    if reason:
        rd.detail = reason[:2000]
    return True
