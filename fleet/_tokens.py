"""API tokens: create, list, revoke, and authenticate a bearer token (hashed at rest)."""

from __future__ import annotations

import logging

from sqlalchemy import select

from ._auth import ROLES, Principal, hash_secret, new_token, parse_token, verify_secret
from ._context import Context
from ._db import ApiToken
from ._errors import AuthError, BadRequestError, found

__all__ = ["ApiTokens"]

log = logging.getLogger(__name__)


class ApiTokens:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def create(self, role: str, name: str = "") -> str:
        if role not in ROLES:
            raise BadRequestError(f"unknown role {role!r}; expected one of {list(ROLES)}")
        tid, token, secret = new_token()
        with self.ctx.Session() as db:
            db.add(ApiToken(id=tid, name=name, role=role, secret_hash=hash_secret(secret)))
            db.commit()
        return token

    def ensure(self, token: str, role: str, name: str) -> None:
        tid, secret = parse_token(token)
        with self.ctx.Session() as db:
            if db.get(ApiToken, tid) is None:
                db.add(ApiToken(id=tid, name=name, role=role, secret_hash=hash_secret(secret)))
                db.commit()

    def list(self) -> list[ApiToken]:
        with self.ctx.ReadSession() as db:
            return list(db.scalars(select(ApiToken).order_by(ApiToken.created_at)))

    def revoke(self, tid: str) -> None:
        with self.ctx.Session() as db:
            found(db.get(ApiToken, tid), f"token {tid!r} does not exist").revoked = True
            db.commit()
        self.ctx.tokens.forget(tid)

    def authenticate(self, token: str) -> Principal:
        cached = self.ctx.tokens.get(token)
        if cached is not None:
            return cached
        tid, secret = parse_token(token)
        with self.ctx.ReadSession() as db:
            row = db.get(ApiToken, tid)
        # One Argon2 check whatever the reason (unknown id, revoked, wrong secret): timing
        # does not tell which token ids exist.
        stored = row.secret_hash if row is not None and not row.revoked else None
        if not verify_secret(stored, secret):
            raise AuthError("invalid or revoked API token")
        p = Principal("api", tid, row.role)
        self.ctx.tokens.put(token, p)
        return p
