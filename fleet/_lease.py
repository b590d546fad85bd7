"""Leader election through the database: one replica at a time runs the rollout engine.

Every replica allowed to run the engine tries to take or renew the ``engine`` lease on each
tick; the holder renews it, and when it stops (or hangs past the TTL) another takes over.
A conditional UPDATE is atomic on SQLite and PostgreSQL alike, so no extra service is needed.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ._db import Lease

__all__ = ["LeaseKeeper"]

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, engine: Engine, name: str, holder: str, ttl_s: float) -> None:
        self.engine, self.name, self.holder, self.ttl_s = engine, name, holder, ttl_s
        self.held = False
        self._renew_at = 0.0

    def acquire(self, now: float | None = None) -> bool:
        """Take the lease if free or expired, renew it if ours; True while we hold it."""
        now = time.time() if now is None else now
        if self.held and now < self._renew_at:
            return True  # renewed less than half a TTL ago: spare the database a write
        with self.engine.begin() as conn:
            got = conn.execute(
                update(Lease)
                .where(
                    Lease.name == self.name,
                    or_(Lease.holder == self.holder, Lease.expires_at < now),
                )
                .values(holder=self.holder, expires_at=now + self.ttl_s)
            ).rowcount
        if not got:
            try:  # first replica ever: the row does not exist yet
                with self.engine.begin() as conn:
                    conn.execute(
                        Lease.__table__.insert().values(
                            name=self.name, holder=self.holder, expires_at=now + self.ttl_s
                        )
                    )
                got = 1
            except IntegrityError:  # it exists and someone else holds it
                got = 0
        if bool(got) != self.held:
            log.info("%s lease %s by %s", self.name, "taken" if got else "lost", self.holder)
        self.held = bool(got)
        self._renew_at = now + self.ttl_s / 2
        return self.held

    def release(self) -> None:
        """Give the lease up at once (clean shutdown: the next replica need not wait)."""
        if not self.held:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(Lease)
                .where(Lease.name == self.name, Lease.holder == self.holder)
                .values(expires_at=0.0)
            )
        self.held = False
