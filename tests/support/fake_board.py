"""A fake board's sysfs/procfs tree (cgroup memory, PSI, thermal zones, load) for tests and
benchmarks that drive the device hot/cold and pressure/no-pressure."""

from __future__ import annotations

from pathlib import Path

__all__ = ["FakeBoard"]


class FakeBoard:
    """A sysfs/procfs tree a test drives hot/cold and pressure/no-pressure."""

    def __init__(self, root: Path, cgroup: str = "v2") -> None:
        self.root = root
        self.cgroup = cgroup
        (root / "proc/self").mkdir(parents=True)
        (root / "proc/self/cgroup").write_text("0::/edgefleet.slice/agent.service\n")
        (root / "proc/cpuinfo").write_text("".join(f"processor\t: {i}\n\n" for i in range(4)))
        (root / "proc/meminfo").write_text(
            "MemTotal:        4000000 kB\nMemFree:  100 kB\nMemAvailable:    3000000 kB\n"
        )
        self.cg = root / "sys/fs/cgroup/edgefleet.slice/agent.service"
        self.cg.mkdir(parents=True)
        for i in range(2):
            (root / f"sys/class/thermal/thermal_zone{i}").mkdir(parents=True)
        self.set(memory=0.5, pressure=0.0, temps=(45.0, 50.0), load=0.5)

    def set(self, memory=None, pressure=None, temps=None, load=None) -> FakeBoard:
        limit = 512 * 2**20
        if memory is not None:
            if self.cgroup == "v2":
                (self.cg / "memory.max").write_text(f"{limit}\n")
                (self.cg / "memory.current").write_text(f"{int(memory * limit)}\n")
            else:
                v1 = self.root / "sys/fs/cgroup/memory"
                v1.mkdir(parents=True, exist_ok=True)
                (v1 / "memory.limit_in_bytes").write_text(f"{limit}\n")
                (v1 / "memory.usage_in_bytes").write_text(f"{int(memory * limit)}\n")
        if pressure is not None:
            (self.cg / "memory.pressure").write_text(
                f"some avg10={pressure:.2f} avg60=0.00 avg300=0.00 total=1\n"
                "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
            )
        if temps is not None:
            for i, t in enumerate(temps):
                (self.root / f"sys/class/thermal/thermal_zone{i}/temp").write_text(
                    f"{int(t * 1000)}\n"
                )
        if load is not None:
            (self.root / "proc/loadavg").write_text(f"{load * 4:.2f} 1.00 1.00 2/300 4242\n")
        return self
