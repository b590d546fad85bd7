"""Operator routes for the CLI and the dashboard at fleet scale: device search with
filters and pagination, a device's page, maintenance windows, the audit log, a cheap
``updates`` poll (what changed since a time) and canary-vs-baseline telemetry.

Mounted before the core router so ``/devices/search`` is not taken for a device id.
"""

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any

from edgefleet.sdk.protocol import MaintenanceWindow
from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import String, case, cast, exists, func, or_, select
from sqlalchemy.orm import aliased

from ._audit import AuditLogStore, audit_out
from ._auth import Principal
from ._db import AuditLog, Device, ModelVersion, Rollout, RolloutDevice
from ._errors import BadRequestError, NotFoundError
from ._registry import model_ref
from ._schemas import ERRORS, time_window
from ._telemetry import query_series, series_by_model

__all__ = ["build_ops_router"]

DeviceId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
Short = Annotated[str | None, Query(max_length=140)]


class WindowsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    windows: list[MaintenanceWindow] = Field(max_length=16)


def _active_model():
    return case(
        (Device.active_slot == "A", Device.slot_a),
        (Device.active_slot == "B", Device.slot_b),
        else_=None,
    )


def _latest_states(db, ids: list[str]) -> dict[str, tuple[int, str, str]]:
    """device id -> (rollout id, state, detail) of its latest rollout."""
    if not ids:
        return {}
    t = RolloutDevice.__table__
    rows = db.execute(
        select(t.c.device_id, t.c.rollout_id, t.c.state, t.c.detail).where(t.c.device_id.in_(ids))
    )
    out: dict[str, tuple[int, str, str]] = {}
    for dev, rid, state, detail in rows:
        if dev not in out or rid > out[dev][0]:
            out[dev] = (rid, state, detail)
    return out


def build_ops_router(service, need: Callable[[str], Callable], device_out: Callable) -> APIRouter:
    r = APIRouter(prefix="/api/v1", responses=ERRORS)
    Viewer = Annotated[Principal, Depends(need("viewer"))]
    Operator = Annotated[Principal, Depends(need("operator"))]
    audit = AuditLogStore(service.ctx)
    ctx = service.ctx
    facets_cache: dict[str, Any] = {"at": 0.0, "value": None}

    @r.get("/whoami", tags=["auth"])
    def whoami(p: Viewer) -> dict:
        """The calling token's id and role (the dashboard hides what the role cannot do)."""
        return {"id": p.id, "role": p.role}

    # ------------------------------------------------------------------ devices

    @r.get("/devices/search", tags=["devices"])
    def search_devices(
        p: Viewer,
        q: Annotated[str, Query(max_length=64)] = "",
        profile: Short = None,
        tag: Short = None,
        online: bool | None = None,
        version: Short = None,
        state: Annotated[str | None, Query(max_length=16)] = None,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict:
        """Devices matching every given filter (``q``: part of the id; ``version``: the
        active model as name@version; ``state``: the device's state in its latest rollout),
        sorted by id, one page at a time, with the total."""
        conds = [Device.decommissioned.is_(False)]
        if q:
            conds.append(Device.id.contains(q, autoescape=True))
        if profile:
            conds.append(Device.profile == profile)
        if tag:  # tags are a JSON list: match the quoted string in its text
            conds.append(cast(Device.tags, String).contains(json.dumps(tag), autoescape=True))
        if online is not None:
            conds.append(Device.online.is_(online))
        if version:
            conds.append(_active_model() == version)
        if state:
            mine = aliased(RolloutDevice)  # its own FROM: not correlated with the EXISTS
            latest = (
                select(func.max(mine.rollout_id))
                .where(mine.device_id == Device.id)
                .correlate(Device)
                .scalar_subquery()
            )
            conds.append(
                exists().where(
                    RolloutDevice.device_id == Device.id,
                    RolloutDevice.rollout_id == latest,
                    RolloutDevice.state == state,
                )
            )
        with ctx.ReadSession() as db:
            total = db.scalar(select(func.count()).select_from(Device).where(*conds))
            devs = list(
                db.scalars(
                    select(Device).where(*conds).order_by(Device.id).offset(offset).limit(limit)
                )
            )
            latest_states = _latest_states(db, [d.id for d in devs])
        items = []
        for d in devs:
            out = device_out(d)
            rid, st, detail = latest_states.get(d.id, (None, None, ""))
            out.update(rollout_id=rid, deployment_state=st, deployment_detail=detail)
            items.append(out)
        return {"total": total, "offset": offset, "limit": limit, "items": items}

    @r.get("/devices/facets", tags=["devices"])
    def device_facets(p: Viewer) -> dict:
        """Values for the filters (profiles, tags, versions, states) and counts; cached 5 s."""
        if facets_cache["value"] is not None and time.monotonic() - facets_cache["at"] < 5:
            return facets_cache["value"]
        with ctx.ReadSession() as db:
            rows = db.execute(
                select(Device.profile, Device.tags, Device.online, _active_model()).where(
                    Device.decommissioned.is_(False)
                )
            ).all()
            states = sorted(db.scalars(select(RolloutDevice.state).distinct()))
        tags: Counter = Counter()
        for row in rows:
            tags.update(row[1] or [])
        value = {
            "total": len(rows),
            "online": sum(1 for row in rows if row[2]),
            "profiles": sorted({row[0] for row in rows if row[0]}),
            "tags": sorted(tags),
            "versions": sorted({row[3] for row in rows if row[3]}),
            "states": states,
        }
        facets_cache.update(at=time.monotonic(), value=value)
        return value

    @r.get("/devices/{device_id}/detail", tags=["devices"])
    def device_detail(p: Viewer, device_id: DeviceId) -> dict:
        """Inventory, runtimes, maintenance windows and the deployment history (each
        rollout's state and reason for this device, newest first)."""
        dev = service.devices.get(device_id)
        out = device_out(dev)
        out["inventory"] = dev.inventory or {}
        out["maintenance_windows"] = dev.maintenance_windows or []
        with ctx.ReadSession() as db:
            rows = db.execute(
                select(
                    RolloutDevice.rollout_id,
                    Rollout.name,
                    Rollout.status,
                    ModelVersion.name,
                    ModelVersion.version,
                    RolloutDevice.wave,
                    RolloutDevice.state,
                    RolloutDevice.detail,
                    RolloutDevice.updated_at,
                )
                .join(Rollout, Rollout.id == RolloutDevice.rollout_id)
                .join(ModelVersion, ModelVersion.id == Rollout.model_version_id)
                .where(RolloutDevice.device_id == device_id)
                .order_by(RolloutDevice.rollout_id.desc())
                .limit(100)
            ).all()
        out["deployments"] = [
            {
                "rollout_id": rid,
                "rollout_name": name,
                "rollout_status": status,
                "model": model_ref(mname, mver),
                "wave": wave,
                "state": state,
                "detail": detail,
                "updated_at": at,
            }
            for rid, name, status, mname, mver, wave, state, detail, at in rows
        ]
        return out

    @r.put("/devices/{device_id}/maintenance-windows", tags=["devices"])
    def set_windows(p: Operator, device_id: DeviceId, body: WindowsIn) -> dict:
        """Windows outside which this device downloads but does not activate; sent with
        every deploy command from now on. ``[]`` clears them (the device's own apply)."""
        with ctx.Session() as db:
            dev = db.get(Device, device_id)
            if dev is None or dev.decommissioned:
                raise NotFoundError(f"device {device_id!r} is not known to this fleet")
            dev.maintenance_windows = [w.model_dump() for w in body.windows] or None
            db.commit()
        return device_detail(p, device_id)

    # ------------------------------------------------------------------ audit

    @r.get("/audit", tags=["audit"])
    def audit_log(
        p: Viewer,
        after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
        before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        target_type: Annotated[str | None, Query(pattern="^(model|device|rollout|token)$")] = None,
        target_id: Short = None,
    ) -> dict:
        """Who did what to which rollout, model, device or token, newest first. Viewers
        see each actor's role, and only their own token id."""
        rows = audit.list(
            after_id=after_id,
            before_id=before_id,
            limit=limit,
            target_type=target_type,
            target_id=target_id,
        )
        with ctx.ReadSession() as db:
            last = db.scalar(select(func.max(AuditLog.id))) or 0
        return {"items": [audit_out(row, p) for row in rows], "last_id": last}

    # ------------------------------------------------------------------ incremental updates

    @r.get("/updates", tags=["ops"])
    def updates(p: Viewer, since: Annotated[float, Query(ge=0, lt=1e11)] = 0.0) -> dict:
        """What changed since ``since`` (unix time, the ``now`` of the previous answer): the
        dashboard polls this (a few hundred bytes) and refetches only what changed."""
        if not 0 <= since < 1e11:  # also refuses NaN and infinity
            raise BadRequestError(f"since must be a unix time >= 0, got {since}")
        now = time.time()
        from datetime import UTC, datetime

        t = datetime.fromtimestamp(since, UTC)
        rd = RolloutDevice.__table__
        with ctx.ReadSession() as db:
            changed = db.scalar(
                select(func.count())
                .select_from(Device)
                .where(or_(Device.last_seen > t, Device.created_at > t))
            )
            ro = set(db.scalars(select(Rollout.id).where(Rollout.updated_at > t)))
            ro |= set(db.scalars(select(rd.c.rollout_id).where(rd.c.updated_at > since).distinct()))
            models = db.scalar(select(func.count()).select_from(ModelVersion))
            last_audit = db.scalar(select(func.max(AuditLog.id))) or 0
        return {
            "now": now,
            "devices_changed": changed,
            "rollouts_changed": sorted(ro),
            "models": models,
            "audit_last_id": last_audit,
        }

    # ------------------------------------------------------------------ telemetry charts

    def _series(model: str, lo: float, hi: float, bucket_s: float, device: str | None = None):
        return query_series(
            ctx.read_engine, model=model, device_id=device, since=lo, until=hi, bucket_s=bucket_s
        )

    @r.get("/telemetry/by-version", tags=["telemetry"])
    def by_version(
        p: Viewer,
        since: float | None = None,
        until: float | None = None,
        bucket_s: Annotated[float, Query(ge=1, le=86400)] = 60,
        device: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")] = None,
    ) -> dict:
        """One series per model version in the window (only real ``name@version`` models:
        samples a device sent without a model are not drawn as a version)."""
        lo, hi = time_window(since, until, 1)
        by_model = series_by_model(
            ctx.read_engine, device_id=device, since=lo, until=hi, bucket_s=bucket_s
        )
        names = sorted(m for m in by_model if m and "@" in m)[:20]
        return {
            "since": lo,
            "until": hi,
            "bucket_s": bucket_s,
            "versions": [{"model": m, "series": by_model[m]} for m in names],
        }

    @r.get("/rollouts/{rollout_id}/compare", tags=["telemetry"])
    def compare(
        p: Viewer,
        rollout_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)],
        since: float | None = None,
        until: float | None = None,
        bucket_s: Annotated[float, Query(ge=1, le=86400)] = 10,
    ) -> dict:
        """The gated figures over time: the rollout's version (canary) against the version
        its devices ran before (baseline), with the gate limits the spec implies."""
        ro = service.rollouts.get(rollout_id)
        mv = service.registry.by_id(ro.model_version_id)
        devs = service.rollouts.devices(rollout_id)
        prev = Counter(d.previous_model for d in devs if d.previous_model)
        baseline = prev.most_common(1)[0][0] if prev else None
        start = ro.created_at.timestamp()
        lo, hi = time_window(since if since is not None else start - 600, until, 1)
        canary = model_ref(mv.name, mv.version)
        return {
            "canary": canary,
            "baseline": baseline,
            "since": lo,
            "until": hi,
            "bucket_s": bucket_s,
            "max_p95_regression": ro.spec.get("max_p95_regression"),
            "max_error_rate_increase": ro.spec.get("max_error_rate_increase"),
            "gates": ro.gates or {},
            "canary_series": _series(canary, lo, hi, bucket_s),
            "baseline_series": _series(baseline, lo, hi, bucket_s) if baseline else [],
        }

    return r
