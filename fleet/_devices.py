"""Devices: registration from MQTT state/inventory, provisioning, tokens, MQTT credentials."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from edgefleet.sdk.protocol import Inventory, State, validate_device_id
from edgefleet.sdk.protocol import ProtocolError as _ProtocolError
from sqlalchemy import select
from sqlalchemy.orm import Session

from ._auth import hash_secret, verify_secret
from ._context import Context
from ._db import Device
from ._errors import BadRequestError, ConflictError, NotFoundError
from ._mosquitto import (
    hash_mqtt_password,
    new_password,
    render_acl,
    render_password_file,
    write_atomic,
)

__all__ = ["Devices", "apply_state", "apply_inventory", "merge_tags"]

log = logging.getLogger(__name__)


def _unknown(device_id: str) -> str:
    return f"device {device_id!r} is not known to this fleet"


def _check_id(device_id: str) -> str:
    try:
        return validate_device_id(device_id)
    except _ProtocolError as e:
        raise BadRequestError(str(e)) from e


def _lookup(db: Session, known: dict[str, Device] | None, device_id: str) -> Device | None:
    if known is None:
        return db.get(Device, device_id)
    return known.get(device_id)


def _new(db: Session, known: dict[str, Device] | None, dev: Device) -> Device:
    db.add(dev)
    if known is not None:
        known[dev.id] = dev
    return dev


def apply_state(db: Session, msg: State, known: dict[str, Device] | None = None) -> Device | None:
    """Record a device's state; ``known`` = devices of this batch prefetched by id."""
    dev = _lookup(db, known, msg.device_id)
    if dev is None:
        dev = _new(db, known, Device(id=msg.device_id, tags=[], inventory={}))
    elif dev.decommissioned:
        return None
    dev.online = msg.online
    dev.last_seen = datetime.now(UTC)
    if msg.agent_version:
        dev.agent_version = msg.agent_version
    if msg.online:
        dev.active_slot = msg.active_slot
        slots = {s.slot: f"{s.package_name}@{s.package_version}" for s in msg.slots}
        dev.slot_a, dev.slot_b = slots.get("A"), slots.get("B")
    return dev


def merge_tags(current: list[str], old_reported: list[str], reported: list[str]) -> list[str]:
    """Tag rule: a device's tags = operator-set tags | the tags the device reports now.

    A tag the device reported before and no longer reports is dropped; every other tag was set
    by an operator and stays. (An operator tag the device also reported is treated as a
    device tag: it goes when the device stops reporting it.)
    """
    operator = set(current or []) - set(old_reported or [])
    return sorted(operator | set(reported))


def apply_inventory(
    db: Session, msg: Inventory, known: dict[str, Device] | None = None
) -> Device | None:
    dev = _lookup(db, known, msg.device_id)
    if dev is None:
        dev = _new(db, known, Device(id=msg.device_id, tags=[], inventory={}))
    elif dev.decommissioned:
        return None
    # The previous inventory holds the tags the device reported last time.
    dev.tags = merge_tags(dev.tags, (dev.inventory or {}).get("tags", []), msg.tags)
    dev.profile = msg.profile
    dev.inventory = msg.model_dump(mode="json", exclude={"schema_version", "type"})
    if msg.agent_version:
        dev.agent_version = msg.agent_version
    dev.last_seen = datetime.now(UTC)
    return dev


class Devices:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def get(self, device_id: str) -> Device:
        with self.ctx.ReadSession() as db:
            dev = db.get(Device, device_id)
        if dev is None or dev.decommissioned:  # decommissioned = gone, as for DELETE
            raise NotFoundError(_unknown(device_id))
        return dev

    def list(self, *, tag: str | None = None, include_decommissioned: bool = False) -> list[Device]:
        with self.ctx.ReadSession() as db:
            stmt = select(Device).order_by(Device.id)
            if not include_decommissioned:
                stmt = stmt.where(Device.decommissioned.is_(False))
            devs = list(db.scalars(stmt))
        return [d for d in devs if tag is None or tag in (d.tags or [])]

    def provision(self, device_id: str, tags: list[str]) -> tuple[Device, str, str]:
        """Create (or re-key) a device; returns (device, download token, MQTT password).
        The secrets are shown once; only hashes are stored."""
        _check_id(device_id)
        if device_id == self.ctx.settings.mqtt_client_id:
            raise BadRequestError(f"device id {device_id!r} is reserved for the fleet")
        token, password = f"efd_{new_password()}", new_password()
        with self.ctx.Session() as db:
            dev = db.get(Device, device_id)
            if dev is None:
                dev = Device(id=device_id, tags=sorted(set(tags)), inventory={})
                db.add(dev)
            elif dev.decommissioned:
                raise ConflictError(f"device {device_id!r} was decommissioned; use a new id")
            else:
                dev.tags = sorted(set(dev.tags or []) | set(tags))
            dev.token_hash = hash_secret(token)
            dev.mqtt_password_hash = hash_mqtt_password(password)
            db.commit()
        self.write_broker_files()
        return dev, token, password

    def set_tags(self, device_id: str, tags: list[str]) -> Device:
        """Replace the operator-set tags; tags the device reports itself stay (they are
        configured on the device, EDGEFLEET_AGENT_TAGS, and would come back anyway)."""
        with self.ctx.Session() as db:
            dev = db.get(Device, device_id)
            if dev is None or dev.decommissioned:
                raise NotFoundError(_unknown(device_id))
            dev.tags = sorted(set(tags) | set((dev.inventory or {}).get("tags", [])))
            db.commit()
        return dev

    def decommission(self, device_id: str) -> Device:
        with self.ctx.Session() as db:
            dev = db.get(Device, device_id)
            if dev is None or dev.decommissioned:
                raise NotFoundError(_unknown(device_id))
            dev.decommissioned = True
            dev.online = False
            dev.token_hash = None
            dev.mqtt_password_hash = None
            db.commit()
        self.ctx.tokens.forget(device_id)
        self.write_broker_files()
        return dev

    def check_token(self, device_id: str, token: str) -> bool:
        with self.ctx.ReadSession() as db:
            dev = db.get(Device, device_id)
        live = dev is not None and not dev.decommissioned
        return verify_secret(dev.token_hash if live else None, token)

    def write_broker_files(self, fleet_password_hash: str | None = None) -> None:
        """Regenerate ``mqtt/passwd`` and ``mqtt/acl`` in data_dir (Mosquitto reloads them
        on SIGHUP)."""
        s = self.ctx.settings
        mdir = s.data_dir / "mqtt"
        with self.ctx.ReadSession() as db:
            rows = db.execute(
                select(Device.id, Device.mqtt_password_hash).where(
                    Device.mqtt_password_hash.is_not(None), Device.decommissioned.is_(False)
                )
            ).all()
        entries = [(r[0], r[1]) for r in rows]
        fleet_hash_file = mdir / "fleet.hash"
        if fleet_password_hash:
            write_atomic(fleet_hash_file, fleet_password_hash)
        if fleet_hash_file.exists():
            entries.insert(0, (s.mqtt_client_id, fleet_hash_file.read_text().strip()))
        write_atomic(mdir / "passwd", render_password_file(entries))
        write_atomic(mdir / "acl", render_acl(s.mqtt_client_id))

    def broker_credentials(self) -> str:
        """Create the fleet's own MQTT password (returned once) and write broker files."""
        password = new_password()
        self.write_broker_files(hash_mqtt_password(password))
        return password
