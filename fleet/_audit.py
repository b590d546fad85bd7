"""The audit log: who (API token id and role) did what to which rollout, model, device or
token, and when. Recorded by one HTTP middleware from the route that answered, so the
routes stay free of bookkeeping; a failed request (4xx/5xx) changed nothing and is not
logged. Viewers see the role of every actor but only their own token id.
"""

from __future__ import annotations

import json
import logging
import re

from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import select

from ._auth import Principal, role_allows
from ._db import AuditLog

__all__ = ["AuditLogStore", "audit_out", "install_audit", "mask_actor", "mask_event_actor"]

log = logging.getLogger(__name__)

# (method, route template) -> (action, target type); the target id comes from the path,
# else from the JSON answer (see _target).
_AUDITED = {
    ("POST", "/api/v1/models"): ("model.upload", "model"),
    ("POST", "/api/v1/devices"): ("device.provision", "device"),
    ("PUT", "/api/v1/devices/{device_id}/tags"): ("device.tag", "device"),
    ("PUT", "/api/v1/devices/{device_id}/maintenance-windows"): ("device.windows", "device"),
    ("DELETE", "/api/v1/devices/{device_id}"): ("device.decommission", "device"),
    ("POST", "/api/v1/rollouts"): ("rollout.create", "rollout"),
    **{
        ("POST", f"/api/v1/rollouts/{{rollout_id}}/{a}"): (f"rollout.{a}", "rollout")
        for a in ("start", "pause", "resume", "abort", "rollback")
    },
    ("POST", "/api/v1/tokens"): ("token.create", "token"),
    ("DELETE", "/api/v1/tokens/{token_id}"): ("token.revoke", "token"),
}


def _target(kind: str, params: dict, body: dict) -> tuple[str, dict]:
    """(target id, detail) without ever keeping a secret (new tokens, device passwords)."""
    if kind == "model":
        return f"{body.get('name')}@{body.get('version')}", {"digest": body.get("digest")}
    if kind == "device":
        dev = body.get("device", body)
        detail = {"tags": dev.get("tags")} if "tags" in dev else {}
        if "maintenance_windows" in body:
            detail = {"windows": body["maintenance_windows"]}
        return str(params.get("device_id") or dev.get("id")), detail
    if kind == "rollout":
        rid = params.get("rollout_id") or body.get("id")
        return str(rid), {"status": body.get("status"), "model": body.get("model")}
    token = body.get("token", "")
    tid = params.get("token_id") or (token.split("_")[1] if token.count("_") >= 2 else "")
    return str(tid), ({"role": body["role"]} if "role" in body else {})


def mask_actor(actor_id: str | None, viewer: Principal) -> str | None:
    """Token ids are for admins and operators; a viewer sees only its own."""
    if actor_id is None or role_allows(viewer.role, "operator") or actor_id == viewer.id:
        return actor_id
    return None


_TOKEN_REF = re.compile(r"token:([0-9a-f]{1,32})")


def mask_event_actor(text: str, viewer: Principal) -> str:
    """Rollout events and reasons name actors ``token:<id>``; a viewer sees ``token`` for
    every id but its own."""
    return _TOKEN_REF.sub(
        lambda m: m.group(0) if mask_actor(m.group(1), viewer) else "token", text or ""
    )


def audit_out(row: AuditLog, viewer: Principal) -> dict:
    return {
        "id": row.id,
        "at": row.at,
        "actor_id": mask_actor(row.actor_id, viewer),
        "actor_role": row.actor_role,
        "action": row.action,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "detail": row.detail or {},
    }


class AuditLogStore:
    def __init__(self, ctx) -> None:
        self.ctx = ctx

    def record(self, p: Principal, action: str, kind: str, target: str, detail: dict) -> None:
        with self.ctx.Session() as db:
            db.add(
                AuditLog(
                    actor_id=p.id,
                    actor_role=p.role,
                    action=action,
                    target_type=kind,
                    target_id=target[:140],
                    detail=detail,
                )
            )
            db.commit()
        log.info("audit: %s (%s) %s %s %s", p.id, p.role, action, kind, target)

    def list(
        self,
        *,
        after_id: int = 0,
        before_id: int | None = None,
        limit: int = 100,
        target_type: str | None = None,
        target_id: str | None = None,
    ) -> list[AuditLog]:
        """Newest first; ``after_id`` for incremental polling, ``before_id`` to page back."""
        stmt = select(AuditLog).where(AuditLog.id > after_id)
        if before_id is not None:
            stmt = stmt.where(AuditLog.id < before_id)
        if target_type:
            stmt = stmt.where(AuditLog.target_type == target_type)
        if target_id:
            stmt = stmt.where(AuditLog.target_id == target_id)
        with self.ctx.ReadSession() as db:
            return list(db.scalars(stmt.order_by(AuditLog.id.desc()).limit(limit)))


def install_audit(app: FastAPI, store: AuditLogStore) -> None:
    @app.middleware("http")
    async def _audit(request: Request, call_next):
        response = await call_next(request)
        if request.method not in ("POST", "PUT", "DELETE") or response.status_code >= 400:
            return response
        route = request.scope.get("route")
        key = (request.method, getattr(route, "path", ""))
        principal = getattr(request.state, "principal", None)
        if key not in _AUDITED or principal is None:
            return response
        raw = b"".join([chunk async for chunk in response.body_iterator])
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        action, kind = _AUDITED[key]
        params = dict(request.path_params)
        target, detail = _target(kind, params, body if isinstance(body, dict) else {})
        try:
            store.record(principal, action.format(**params), kind, target, detail)
        except Exception:  # the change happened; a lost audit row is logged, not a 500
            log.exception("could not record audit entry %s %s", action, target)
        return Response(
            raw,
            status_code=response.status_code,
            headers={k: v for k, v in response.headers.items() if k != "content-length"},
            media_type=response.media_type,
        )
