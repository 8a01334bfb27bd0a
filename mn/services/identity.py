"""Sessions: LogInByAccount, LogInByUser, LogOut, ValidateSession, RenewSession.

The client sends the password as SHA-512 hex (as ZStack clients do); the MN stores a salted
PBKDF2 of that. Sessions live in the database only: every call reads its session row (a
primary-key read, SessionStore.validate), so LogOut, RenewSession and expiry take effect at once in
every process of every MN sharing the database; no process caches a session.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import bindparam, delete, select

from mn.api.registry import Msg, apis
from mn.context import ADMIN_ACCOUNT_UUID, ApiContext, Caller, Services
from mn.db.base import new_uuid, utcnow
from mn.errors import AUTHENTICATION_ERROR, INVALID_ARGUMENT, INVALID_SESSION, ApiError
from mn.globalconfig import SESSION_TIMEOUT
from mn.inventory import to_inventory
from mn.models import Account, Session, User

ADMIN_UUID = ADMIN_ACCOUNT_UUID
ADMIN_NAME = "admin"
ADMIN_DEFAULT_PASSWORD = "password"
_ITERATIONS = 50_000
_SESSION = (select(Session.accountUuid, Session.expiredDate, Session.userUuid, Session.userType, Account.type)
            .join(Account, Account.uuid == Session.accountUuid).where(Session.uuid == bindparam("uuid")))


def sha512_hex(password: str) -> str:
    return hashlib.sha512(password.encode()).hexdigest()


def hash_password(client_hash: str, salt: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", client_hash.lower().encode(), salt.encode(), _ITERATIONS).hex()


def ensure_admin(svc: Services) -> None:
    with svc.db.tx() as s:
        if s.get(Account, ADMIN_UUID) is None:
            salt = secrets.token_hex(16)
            s.add(Account(uuid=ADMIN_UUID, name=ADMIN_NAME, type="SystemAdmin", passwordSalt=salt,
                          passwordHash=hash_password(sha512_hex(ADMIN_DEFAULT_PASSWORD), salt),
                          description="the administrator"))


class SessionStore:
    """Sessions as the dispatcher checks them: the database row, read on every call."""

    def validate(self, svc: Services, session_uuid: str | None) -> Caller:
        """Who the session is; ApiError INVALID_SESSION (401) if it is absent or expired."""
        if not session_uuid:
            raise ApiError(INVALID_SESSION, "this API needs a session: log in with LogInByAccount",
                           http_status=401)
        with svc.db.read() as conn:
            row = conn.execute(_SESSION, {"uuid": session_uuid}).first()
        if row is None or row.expiredDate < utcnow():
            raise ApiError(INVALID_SESSION, f"session[uuid:{session_uuid}] is invalid or expired",
                           http_status=401)
        user = row.userUuid if row.userType == "UserVO" else None
        return Caller(row.accountUuid, admin=row.type == "SystemAdmin", user_uuid=user)


def _session_inventory(ctx: ApiContext, row: Session) -> dict:
    with ctx.db.ro() as s:
        return to_inventory(s, row)


@apis.handler("LogInByAccount")
def log_in(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.tx() as s:
        acc = s.scalar(select(Account).where(Account.name == msg.accountName))
        if acc is None or not hmac.compare_digest(acc.passwordHash, hash_password(msg.password, acc.passwordSalt)):
            raise ApiError(AUTHENTICATION_ERROR, "wrong account name or password", http_status=401)
        return _new_session(ctx, s, acc.uuid, acc.uuid, "AccountVO")


def _new_session(ctx: ApiContext, s: Any, account_uuid: str, user_uuid: str, user_type: str) -> dict:
    timeout = ctx.gconf.get(SESSION_TIMEOUT)
    row = Session(uuid=new_uuid(), accountUuid=account_uuid, userUuid=user_uuid, userType=user_type,
                  expiredDate=utcnow() + dt.timedelta(seconds=timeout), createDate=utcnow())
    s.add(row)
    s.flush()
    return {"inventory": to_inventory(s, row)}


@apis.handler("LogInByUser")
def log_in_by_user(ctx: ApiContext, msg: Msg) -> dict:
    """A user's session (userType UserVO): its account by accountUuid or accountName."""
    if not msg.get("accountUuid") and not msg.get("accountName"):
        raise ApiError(INVALID_ARGUMENT, "LogInByUser needs accountUuid or accountName", http_status=400)
    with ctx.db.tx() as s:
        q = select(User).join(Account, Account.uuid == User.accountUuid).where(User.name == msg.userName)
        if msg.get("accountUuid"):
            q = q.where(Account.uuid == msg.accountUuid)
        if msg.get("accountName"):
            q = q.where(Account.name == msg.accountName)
        user = s.scalar(q)
        if user is None or not hmac.compare_digest(user.passwordHash, hash_password(msg.password, user.passwordSalt)):
            raise ApiError(AUTHENTICATION_ERROR, "wrong account, user name or password", http_status=401)
        return _new_session(ctx, s, user.accountUuid, user.uuid, "UserVO")


@apis.handler("LogOut")
def log_out(ctx: ApiContext, msg: Msg) -> dict:
    uuid = msg.get("sessionUuid") or ctx.session_uuid
    if uuid:
        with ctx.db.tx() as s:
            s.execute(delete(Session).where(Session.uuid == uuid))
    return {}


@apis.handler("ValidateSession")
def validate_session(ctx: ApiContext, msg: Msg) -> dict:
    try:
        ctx.svc.session_store().validate(ctx.svc, msg.sessionUuid)
        return {"validSession": True}
    except ApiError:
        return {"validSession": False}


@apis.handler("RenewSession")
def renew_session(ctx: ApiContext, msg: Msg) -> dict:
    uuid = msg.get("sessionUuid") or ctx.session_uuid
    with ctx.db.tx() as s:
        row = s.get(Session, uuid)
        if row is None:
            raise ApiError(INVALID_SESSION, f"session[uuid:{uuid}] is invalid or expired")
        seconds = msg.get("duration") or ctx.gconf.get(SESSION_TIMEOUT)
        row.expiredDate = utcnow() + dt.timedelta(seconds=int(seconds))
        s.flush()
        inv = to_inventory(s, row)
    return {"inventory": inv}
