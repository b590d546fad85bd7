"""Signed commands the rollout engine sends: deploy (with a per-device download ticket),
rollback and cancel. Every command carries a fresh nonce and an expiry and is signed with
the fleet's Ed25519 key; one deployment id per rollout makes redelivery harmless."""

from __future__ import annotations

import logging

from edgefleet.sdk.protocol import (
    CancelCommand,
    DeployCommand,
    MaintenanceWindow,
    ManifestSignature,
    RollbackCommand,
    cmd_topic,
    command_fields,
    encode,
    sign_command,
)
from sqlalchemy import select

from ._context import Context
from ._db import Device, ModelVersion, Rollout
from ._download_tickets import download_ticket, ticket_url

__all__ = ["CommandSender", "deployment_id", "download_ticket"]

log = logging.getLogger(__name__)


def deployment_id(rollout_id: int) -> str:
    return f"rollout-{rollout_id}"


class CommandSender:
    """Builds, signs and publishes the rollout engine's commands to devices."""

    def __init__(self, ctx: Context, ticket_secret: bytes) -> None:
        self.ctx = ctx
        self.ticket_secret = ticket_secret

    def _sign_publish(self, cmd) -> None:
        signed = sign_command(cmd, self.ctx.signing_key)
        self.ctx.publish(cmd_topic(cmd.device_id), encode(signed), 1, False)
        self.ctx.metrics.inc("edgefleet_fleet_commands_sent_total", type=cmd.type)

    def deploy(self, r: Rollout, mv: ModelVersion, device_ids: list[str]) -> dict[str, str]:
        s = self.ctx.settings
        sig = mv.manifest.get("signature") or {}
        windows = self._windows(device_ids)
        ids: dict[str, str] = {}
        for dev in device_ids:
            fields = command_fields(dev, ttl_s=s.command_ttl_s)
            url, _ = ticket_url(s.base_url, self.ticket_secret, dev, mv.name, mv.version,
                                s.download_ticket_ttl_s)  # fmt: skip
            cmd = DeployCommand(
                **fields,
                deployment_id=deployment_id(r.id),
                package_name=mv.name,
                package_version=mv.version,
                artifact_url=url,
                sha256=mv.file_sha256,
                size=mv.size,
                manifest_signature=ManifestSignature(
                    key_id=sig.get("key_id", ""), value=sig.get("value", "")
                ),
                health_window_s=float(r.spec.get("health_window_s", 0.0) or 0.0),
                maintenance_windows=windows.get(dev, []),
            )
            self._sign_publish(cmd)
            ids[dev] = fields["command_id"]
        return ids

    def _windows(self, device_ids: list[str]) -> dict[str, list[MaintenanceWindow]]:
        """Maintenance windows given to these devices through the API (most have none)."""
        out: dict[str, list[MaintenanceWindow]] = {}
        with self.ctx.ReadSession() as db:
            for i in range(0, len(device_ids), 500):
                rows = db.execute(
                    select(Device.id, Device.maintenance_windows).where(
                        Device.id.in_(device_ids[i : i + 500]),
                        Device.maintenance_windows.is_not(None),
                    )
                )
                for dev, ws in rows:
                    if ws:
                        out[dev] = [MaintenanceWindow(**w) for w in ws]
        return out

    def rollback(self, r: Rollout, device_ids: list[str]) -> None:
        for dev in device_ids:
            fields = command_fields(dev, ttl_s=self.ctx.settings.command_ttl_s)
            self._sign_publish(RollbackCommand(**fields, deployment_id=deployment_id(r.id)))

    def cancel(self, r: Rollout, device_ids: list[str]) -> None:
        for dev in device_ids:
            fields = command_fields(dev, ttl_s=self.ctx.settings.command_ttl_s)
            self._sign_publish(CancelCommand(**fields, deployment_id=deployment_id(r.id)))
