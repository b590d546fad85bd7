"""Maintenance windows: when a device may activate a new model (cron + duration + timezone).

Shared by the fleet (which stores windows given through its API and sends them in the
deploy command) and the agent (which declares its own in its settings and, outside every
window, downloads and stages a package but waits to activate it). Cron is the classic
five fields ``minute hour day-of-month month day-of-week`` with ``*``, ``a-b``, ``*/n``,
``a-b/n`` and lists; day of week 0-7 (0 and 7 are Sunday); when both day fields are
restricted either may match, as in cron.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "WAITING_FOR_WINDOW",
    "MaintenanceWindow",
    "drop_empty",
    "next_window_start",
    "window_open",
]

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
           ("day of week", 0, 7))  # fmt: skip
# How a STAGED device says it is holding for a window (the fleet does not time it out).
WAITING_FOR_WINDOW = "waiting for a maintenance window"
_SEARCH_DAYS = 400  # a window that never opens within this horizon is refused


def _parse_field(text: str, name: str, lo: int, hi: int) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        rng, _, step_s = part.partition("/")
        try:
            step = int(step_s) if step_s else 1
            if rng == "*":
                a, b = lo, hi
            elif "-" in rng:
                a, b = (int(x) for x in rng.split("-", 1))
            else:
                a = b = int(rng)
        except ValueError:
            raise ValueError(
                f"cron {name}: expected a number, range or */n, got {part!r}"
            ) from None
        if step < 1 or not (lo <= a <= b <= hi):
            raise ValueError(f"cron {name}: {part!r} is outside {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return frozenset(out)


class MaintenanceWindow(BaseModel):
    """Opens at each time ``cron`` matches (in ``timezone``) for ``duration_s`` seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cron: str = Field(
        description="minute hour day-of-month month day-of-week, e.g. '0 2 * * *'",
        # The shape, for the schema; the validator below says what is wrong, field by field.
        json_schema_extra={"pattern": r"^[0-9*,/-]+( [0-9*,/-]+){4}$"},
        max_length=200,
    )
    duration_s: int = Field(ge=60, le=7 * 86400)
    timezone: str = Field(default="UTC", description="IANA zone, e.g. Europe/Berlin")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        fields = v.split()
        if len(fields) != 5:
            raise ValueError(f"expected 5 cron fields (minute hour dom month dow), got {v!r}")
        for text, (name, lo, hi) in zip(fields, _FIELDS, strict=True):
            _parse_field(text, name, lo, hi)
        return " ".join(fields)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}; expected an IANA name like UTC") from None
        return v

    @cached_property
    def _sets(self) -> tuple[frozenset[int], ...]:
        parsed = [
            _parse_field(t, n, lo, hi)
            for t, (n, lo, hi) in zip(self.cron.split(), _FIELDS, strict=True)
        ]
        dow = parsed[4]
        if 7 in dow:
            parsed[4] = dow | {0}
        return tuple(parsed)

    def _day_ok(self, t: datetime) -> bool:
        _, _, dom, month, dow = self._sets
        if t.month not in month:
            return False
        dom_any, dow_any = self.cron.split()[2] == "*", self.cron.split()[4] == "*"
        cron_dow = (t.weekday() + 1) % 7  # Python: Monday 0; cron: Sunday 0
        if dom_any or dow_any:
            return t.day in dom and cron_dow in dow
        return t.day in dom or cron_dow in dow

    def _starts(self, local: datetime) -> bool:
        minute, hour = self._sets[0], self._sets[1]
        return local.minute in minute and local.hour in hour and self._day_ok(local)

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.timezone)).replace(second=0, microsecond=0)
        # The window is open if it started within the last duration_s.
        t = local
        earliest = now - timedelta(seconds=self.duration_s)
        while t > earliest:
            if self._starts(t):
                return True
            t = t - timedelta(minutes=1)
        return False

    def next_start(self, now: datetime) -> datetime | None:
        """The next time (UTC) this window opens after ``now``; None within ~a year."""
        zone = ZoneInfo(self.timezone)
        t = (now.astimezone(zone) + timedelta(minutes=1)).replace(second=0, microsecond=0)
        end = t + timedelta(days=_SEARCH_DAYS)
        minute, hour = self._sets[0], self._sets[1]
        while t < end:
            if not self._day_ok(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
            elif t.hour not in hour:
                t = (t + timedelta(hours=1)).replace(minute=0)
            elif t.minute not in minute:
                t = t + timedelta(minutes=1)
            else:
                return t.astimezone(UTC)
        return None


def window_open(windows: Iterable[MaintenanceWindow], now: datetime | None = None) -> bool:
    """True when there are no windows (no restriction) or one of them is open."""
    windows = list(windows)
    now = now or datetime.now(UTC)
    return not windows or any(w.is_open(now) for w in windows)


def next_window_start(
    windows: Iterable[MaintenanceWindow], now: datetime | None = None
) -> datetime | None:
    now = now or datetime.now(UTC)
    starts = [s for w in windows if (s := w.next_start(now)) is not None]
    return min(starts) if starts else None


def drop_empty(data, key: str):
    """Serializer helper: leave an empty optional list out of a message, so its bytes (and
    signature) are what they were before the field existed and older peers accept it."""
    if isinstance(data, dict) and not data.get(key):
        data.pop(key, None)
    return data
