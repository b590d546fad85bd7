"""The A/B model store on a device.

Layout under ``root``::

    slots/A/            an unpacked, verified package (plus slot.json describing it)
    slots/B/
    current.json        {"slot": "A", "previous": "B", "generation": 7}

``current.json`` is only ever replaced atomically, so the device always has one valid
active slot once it has had one. A slot is filled by unpacking into ``slots/.X.staging``
and renaming, so a half-written slot is never mistaken for a good one.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgefleet.sdk import PackageError
from edgefleet.sdk.protocol import SlotInfo

from ._fsutil import fsync_dir, read_json, write_json_atomic

if TYPE_CHECKING:
    from edgefleet.sdk import TrustPolicy

__all__ = ["SLOTS", "Pointer", "ModelStore"]

log = logging.getLogger(__name__)

SLOTS = ("A", "B")


@dataclass(frozen=True)
class Pointer:
    slot: str
    previous: str | None
    generation: int


class ModelStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / "slots").mkdir(parents=True, exist_ok=True)
        self.pointer_path = self.root / "current.json"

    # -- reading
    def slot_dir(self, slot: str) -> Path:
        if slot not in SLOTS:
            raise ValueError(f"expected slot A or B, got {slot!r}")
        return self.root / "slots" / slot

    def pointer(self) -> Pointer | None:
        data = read_json(self.pointer_path)
        if not isinstance(data, dict) or data.get("slot") not in SLOTS:
            return None
        return Pointer(data["slot"], data.get("previous"), int(data.get("generation", 0)))

    def active_slot(self) -> str | None:
        p = self.pointer()
        return p.slot if p and self.has_package(p.slot) else None

    def active_dir(self) -> Path | None:
        slot = self.active_slot()
        return None if slot is None else self.slot_dir(slot)

    def other(self, slot: str | None) -> str:
        return "B" if slot == "A" else "A"

    def has_package(self, slot: str) -> bool:
        d = self.slot_dir(slot)
        return (d / "manifest.json").is_file() and (d / "slot.json").is_file()

    def slot_info(self, slot: str) -> SlotInfo | None:
        if not self.has_package(slot):
            return None
        meta = read_json(self.slot_dir(slot) / "slot.json") or {}
        try:
            return SlotInfo(slot=slot, active=self.active_slot() == slot, **meta)
        except ValueError:
            return None

    def slots(self) -> list[SlotInfo]:
        return [i for s in SLOTS if (i := self.slot_info(s)) is not None]

    # -- writing
    def stage(
        self, slot: str, package_file: Path, policy: TrustPolicy, deployment_id: str | None
    ) -> SlotInfo:
        """Unpack and verify ``package_file`` into ``slot`` (never the active one).
        ``package_file`` may also be a package directory (a per-device partial download),
        which is moved, not copied, into the slot."""
        if slot == self.active_slot():
            raise PackageError(f"refusing to overwrite the active slot {slot}")
        staging = self.root / "slots" / f".{slot}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            from edgefleet.sdk import open_package  # pydantic manifest: only when staging

            if package_file.is_dir():
                shutil.move(package_file, staging)
                pkg = open_package(staging, policy)
            else:
                pkg = open_package(package_file, policy, extract_to=staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        meta = {
            "package_name": pkg.manifest.name,
            "package_version": pkg.manifest.version,
            "digest": pkg.digest,
            "deployment_id": deployment_id,
        }
        write_json_atomic(staging / "slot.json", meta)
        target = self.slot_dir(slot)
        self.clear(slot)
        staging.rename(target)
        fsync_dir(target.parent)
        return SlotInfo(slot=slot, active=False, **meta)

    def clear(self, slot: str) -> None:
        if slot == self.active_slot():
            raise PackageError(f"refusing to clear the active slot {slot}")
        target = self.slot_dir(slot)
        if target.exists():
            # Rename first so a crash mid-delete never leaves a half slot under the real name.
            trash = self.root / "slots" / f".{slot}.trash"
            shutil.rmtree(trash, ignore_errors=True)
            target.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)

    def activate(self, slot: str) -> Pointer:
        """Atomically make ``slot`` the active one (write-new + fsync + rename)."""
        if not self.has_package(slot):
            raise PackageError(f"slot {slot} holds no package; cannot activate it")
        old = self.pointer()
        new = Pointer(
            slot,
            old.slot if old and old.slot != slot else (old.previous if old else None),
            (old.generation + 1) if old else 1,
        )
        write_json_atomic(
            self.pointer_path,
            {"slot": new.slot, "previous": new.previous, "generation": new.generation},
        )
        log.info("activated slot %s (generation %d)", slot, new.generation)
        return new

    def install(self, package_file: Path, policy: TrustPolicy) -> SlotInfo:
        """Provision a package directly (first install, factory image): stage it into the
        inactive slot and activate it."""
        slot = self.other(self.active_slot())
        info = self.stage(slot, Path(package_file), policy, None)
        self.activate(slot)
        return info.model_copy(update={"active": True})

    def repair(self) -> None:
        """At startup: if the pointer names an empty slot (impossible by construction, but
        disks lie) point at the other slot when it holds a package."""
        p = self.pointer()
        if p is not None and not self.has_package(p.slot) and self.has_package(self.other(p.slot)):
            log.warning("slot %s is empty; falling back to slot %s", p.slot, self.other(p.slot))
            self.activate(self.other(p.slot))
        for slot in SLOTS:
            shutil.rmtree(self.root / "slots" / f".{slot}.staging", ignore_errors=True)
            shutil.rmtree(self.root / "slots" / f".{slot}.trash", ignore_errors=True)
