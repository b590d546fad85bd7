"""Energy per inference, measured where the board exposes power; "not measured" elsewhere.

Sources, read under a ``root`` (``/`` on a device; tests use fake sysfs trees):

- x86 RAPL: ``/sys/class/powercap/intel-rapl:N/energy_uj`` (package domains only, so
  sub-domains are not counted twice), wrapping at ``max_energy_range_uj``;
- hwmon energy counters: ``/sys/class/hwmon/hwmon*/energy*_input`` (µJ);
- Jetson INA3221 rails under hwmon (``name`` = ina3221): ``in*_input`` (mV) x
  ``curr*_input`` (mA), the board's input rail (label ``VDD_IN``) when labelled, else all
  rails; and hwmon ``power*_input`` (µW): sampled by a thread and integrated over time.

Counters are preferred (exact over the interval); nothing is ever estimated: without a
source the reading is None with the reason.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

__all__ = ["EnergyMeter", "EnergyReading", "PowerSource", "find_power_sources"]

log = logging.getLogger(__name__)

NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class PowerSource:
    name: str
    kind: str  # "counter" (µJ, cumulative) or "power" (W, instantaneous)
    paths: tuple[Path, ...]
    # For counters: where it wraps (µJ); for INA3221 rails: (voltage mV, current mA) pairs.
    wrap_uj: int | None = None

    def read(self) -> float:
        """µJ for a counter, W for a power source; OSError/ValueError if unreadable."""
        values = [int(p.read_text().strip() or "x") for p in self.paths]
        if self.kind == "counter":
            return float(sum(values))
        if self.paths[0].name.startswith("power"):
            return sum(values) / 1e6
        # INA3221: (in mV, curr mA) pairs -> W
        return sum(v * i for v, i in zip(values[::2], values[1::2], strict=True)) / 1e6


@dataclass(frozen=True)
class EnergyReading:
    joules: float | None
    seconds: float
    source: str  # "intel-rapl:0 (RAPL counter)", or why nothing was measured

    @property
    def measured(self) -> bool:
        return self.joules is not None

    def per_inference(self, n: int) -> float | None:
        return None if self.joules is None or n <= 0 else self.joules / n


def _text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _readable(src: PowerSource) -> str:
    try:
        src.read()
        return ""
    except (OSError, ValueError) as e:
        return f"{src.name} is present but unreadable ({type(e).__name__}: {e})"


def find_power_sources(root: str | Path = "/") -> tuple[list[PowerSource], list[str]]:
    """Usable sources (best first) and why others were skipped."""
    root = Path(root)
    found: list[PowerSource] = []
    rapl = sorted((root / "sys/class/powercap").glob("intel-rapl:*"))
    packages = [d for d in rapl if re.fullmatch(r"intel-rapl:\d+", d.name)]
    if packages:
        wrap = _text(packages[0] / "max_energy_range_uj")
        found.append(PowerSource(
            "+".join(_text(d / "name") or d.name for d in packages) + " (RAPL counter)",
            "counter", tuple(d / "energy_uj" for d in packages),
            int(wrap) if wrap.isdigit() else None,
        ))  # fmt: skip
    for hw in sorted((root / "sys/class/hwmon").glob("hwmon*")):
        name = _text(hw / "name") or hw.name
        energy = sorted(hw.glob("energy*_input"))
        power = sorted(hw.glob("power*_input"))
        if energy:
            found.append(PowerSource(f"{name} energy (hwmon counter)", "counter", tuple(energy)))
        elif power:
            found.append(PowerSource(f"{name} power (hwmon)", "power", tuple(power)))
        elif name.startswith("ina3221"):
            chans = sorted(
                int(m.group(1)) for p in hw.glob("curr*_input")
                if (m := re.fullmatch(r"curr(\d+)_input", p.name))
            )  # fmt: skip
            labels = {c: _text(hw / f"in{c}_label") for c in chans}
            board = [c for c in chans if labels[c].upper() in ("VDD_IN", "VIN_SYS_5V0")]
            use = board or chans
            if use:
                paths = tuple(p for c in use for p in (hw / f"in{c}_input", hw / f"curr{c}_input"))
                what = "+".join(labels[c] or f"ch{c}" for c in use)
                found.append(PowerSource(f"{name} {what} (INA3221 V x I)", "power", paths))
    usable, skipped = [], []
    for src in found:
        why = _readable(src)
        (skipped.append(why) if why else usable.append(src))
    usable.sort(key=lambda s: s.kind != "counter")
    return usable, skipped


class EnergyMeter:
    """``with meter.measure() as m: ...`` then ``m.reading``; a no-op where nothing is
    exposed (the reading then says why)."""

    def __init__(self, root: str | Path = "/", sample_s: float = 0.01) -> None:
        sources, skipped = find_power_sources(root)
        self.source = sources[0] if sources else None
        self.sample_s = sample_s
        self.why_not = "" if self.source else (
            f"{NOT_MEASURED}: " + ("; ".join(skipped) or "this board exposes no power sensor "
            "(RAPL /sys/class/powercap, hwmon energy*/power*, INA3221)")
        )  # fmt: skip

    def measure(self) -> _Measurement:
        return _Measurement(self)


class _Measurement:
    def __init__(self, meter: EnergyMeter) -> None:
        self.meter = meter
        self.reading: EnergyReading | None = None
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        src = self.meter.source
        assert src is not None
        while True:
            try:
                self._samples.append((time.monotonic(), src.read()))
            except (OSError, ValueError) as e:  # skip one unreadable sample, keep going
                log.debug("power sample from %s failed: %s", src.name, e)
            if self._stop.is_set():
                return
            self._stop.wait(self.meter.sample_s)

    def __enter__(self) -> _Measurement:
        src = self.meter.source
        self._t0 = time.monotonic()
        if src is not None and src.kind == "counter":
            self._start = src.read()
        elif src is not None:
            self._thread = threading.Thread(target=self._sample, name="energy", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        seconds = time.monotonic() - self._t0
        src = self.meter.source
        if src is None:
            self.reading = EnergyReading(None, seconds, self.meter.why_not)
            return
        if src.kind == "counter":
            try:
                delta = src.read() - self._start
            except (OSError, ValueError) as e:
                self.reading = EnergyReading(None, seconds, f"{NOT_MEASURED}: {src.name}: {e}")
                return
            if delta < 0 and src.wrap_uj:
                delta += src.wrap_uj  # the counter wrapped once during the interval
            joules = delta / 1e6 if delta >= 0 else None
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            s = self._samples
            if len(s) < 2:
                why = f"{NOT_MEASURED}: {src.name} gave fewer than 2 readings"
                self.reading = EnergyReading(None, seconds, why)
                return
            # Trapezoids between samples: W x s = J.
            joules = sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in pairwise(s))
        why = src.name if joules is not None else f"{NOT_MEASURED}: {src.name} went backwards"
        self.reading = EnergyReading(joules, seconds, why)
