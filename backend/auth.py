"""Users, password hashing, login sessions, roles and the permission checks every write goes through.

An *actor* is a user row (dict with at least `id`, `username`, `role`). Backend functions
that change state take the actor and call `require(actor, action)` first, so a viewer is
refused by the backend itself, whichever face (page, CLI, script) called it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

import sqlite_utils

from backend.db import now, one, transaction
from backend.errors import Invalid, NotFound

ROLES = ("admin", "reviewer", "labeler", "viewer")

# What each role may do. Higher roles include everything of the lower ones.
_ROLE_ACTIONS = {
    "viewer": {"view"},
    "labeler": {"view", "label"},
    "reviewer": {"view", "label", "review", "ingest", "export", "train", "read_urls"},
    "admin": {"view", "label", "review", "ingest", "export", "train", "read_urls", "manage_users",
              "manage_projects", "assign", "server_paths", "external_runner", "configure_server"},
}
# In words, for README's Roles table (tests/test_roles.py checks it against the sets above).
ACTION_WORDS = {
    "view": "see projects, images, boxes, progress, dataset versions, configs, runs and models; "
            "open uploaded record files and dataset versions in the TFRecord browser; predict on "
            "uploaded images; validate configs",
    "label": "draw and save boxes, submit, skip, mark \"no objects\", accept or reject model drafts",
    "review": "approve and reject submitted images",
    "ingest": "upload images, import annotations",
    "export": "write dataset versions, prepare their zips",
    "train": "save configs; start, cancel, resume, retrain, evaluate and export runs with the "
             "built-in trainer; register models, mark one current, run batch prediction",
    "read_urls": "open record sets and label maps by URL (gs://…) in the TFRecord browser",
    "manage_users": "add users, change roles, disable accounts, reset passwords",
    "manage_projects": "create, rename and archive projects; add, rename, recolour, reorder and "
                       "delete classes; create classes from imports and label maps",
    "assign": "assign images to labelers, release leases",
    "server_paths": "use any path on the server (others: only the data folder and allowed folders)",
    "external_runner": "start runs with an external runner the server's owner configured",
    "configure_server": "change server settings (runners, allowed folders; the command line only)",
}

# The command line runs on the server with the data directory in hand: it acts as an admin.
CLI_ACTOR: dict[str, Any] = {"id": None, "username": "cli", "role": "admin"}

SESSION_SECONDS = 14 * 24 * 3600
MAX_FAILED_LOGINS = 5
FAILED_LOGIN_WINDOW = 15 * 60
MIN_PASSWORD_LENGTH = 8

# scrypt with n=2**14, r=8 uses 16 MiB per hash: memory-hard, ~50 ms here.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class RateLimited(Invalid):
    """Too many failed logins for a user name in the window."""


def can(actor: dict | None, action: str) -> bool:
    return bool(actor) and action in _ROLE_ACTIONS.get(actor.get("role"), set())


def require(actor: dict | None, action: str) -> None:
    """Raise PermissionError unless `actor`'s role allows `action`."""
    if not can(actor, action):
        who = actor.get("username") if actor else "anonymous"
        role = actor.get("role") if actor else "no role"
        raise PermissionError(f"{who} ({role}) may not {action.replace('_', ' ')}")


# ---------------------------------------------------------------- passwords


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R,
                            p=_SCRYPT_P, dklen=32)
    return "scrypt${}${}${}${}${}".format(_SCRYPT_N, _SCRYPT_R, _SCRYPT_P,
                                          base64.b64encode(salt).decode(),
                                          base64.b64encode(digest).decode())


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    actual = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n),
                            r=int(r), p=int(p), dklen=len(base64.b64decode(digest)))
    return hmac.compare_digest(actual, base64.b64decode(digest))


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"password must have at least {MIN_PASSWORD_LENGTH} characters")


def _check_username(username: str) -> str:
    username = (username or "").strip()
    if not username or len(username) > 64 or any(c.isspace() for c in username):
        raise Invalid("user name must be 1–64 characters without spaces")
    return username


# ---------------------------------------------------------------- users


def public(user: dict) -> dict:
    """A user row without its password hash."""
    return {k: v for k, v in user.items() if k != "password_hash"}


def has_users(db: sqlite_utils.Database) -> bool:
    return one(db, "select 1 as x from users limit 1") is not None


def create_first_admin(db: sqlite_utils.Database, username: str, password: str) -> dict:
    """The first account, made from the empty app's welcome screen; refused once any user exists."""
    with transaction(db):
        if has_users(db):
            raise PermissionError("the first admin already exists; ask an admin for an account")
        return _insert_user(db, username, password, "admin")


def add_user(db: sqlite_utils.Database, actor: dict, username: str, password: str,
             role: str) -> dict:
    require(actor, "manage_users")
    with transaction(db):
        return _insert_user(db, username, password, role)


def _insert_user(db, username: str, password: str, role: str) -> dict:
    username = _check_username(username)
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    _check_password(password)
    if one(db, "select id from users where username = ?", [username]):
        raise Invalid(f"user {username!r} already exists")
    user_id = db["users"].insert({"username": username, "password_hash": hash_password(password),
                                  "role": role, "disabled": 0, "created_at": now()}).last_pk
    return get_user(db, user_id)


def get_user(db: sqlite_utils.Database, user: int | str) -> dict:
    column = "id" if isinstance(user, int) else "username"
    row = one(db, f"select * from users where {column} = ?", [user])
    if row is None:
        raise NotFound(f"no user {user!r}")
    return public(row)


def list_users(db: sqlite_utils.Database) -> list[dict]:
    return [public(row) for row in db.query("select * from users order by username")]


def set_disabled(db: sqlite_utils.Database, actor: dict, user_id: int, disabled: bool) -> dict:
    """Disable (or re-enable) an account; disabling also ends its open sessions."""
    require(actor, "manage_users")
    if disabled and actor.get("id") == user_id:
        raise Invalid("you cannot disable your own account")
    with transaction(db):
        user = get_user(db, user_id)
        db["users"].update(user_id, {"disabled": int(disabled)})
        if disabled:
            db.execute("delete from sessions where user_id = ?", [user_id])
    return get_user(db, user["id"])


def set_role(db: sqlite_utils.Database, actor: dict, user_id: int, role: str) -> dict:
    require(actor, "manage_users")
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if actor.get("id") == user_id and role != "admin":
        raise Invalid("you cannot take the admin role from yourself")
    get_user(db, user_id)
    db["users"].update(user_id, {"role": role})
    return get_user(db, user_id)


def reset_password(db: sqlite_utils.Database, actor: dict, user_id: int, password: str) -> None:
    """Set a new password and end the user's sessions (admins, or users for themselves)."""
    if actor.get("id") != user_id:
        require(actor, "manage_users")
    _check_password(password)
    get_user(db, user_id)
    with transaction(db):
        db["users"].update(user_id, {"password_hash": hash_password(password)})
        db.execute("delete from sessions where user_id = ?", [user_id])


# ---------------------------------------------------------------- login sessions


def login(db: sqlite_utils.Database, username: str, password: str) -> tuple[dict, str]:
    """Check a password and open a session; returns (user, session token).

    After MAX_FAILED_LOGINS failures for a name within FAILED_LOGIN_WINDOW seconds, further
    attempts are refused until the oldest failure leaves the window, right password or not.
    """
    username = (username or "").strip()
    since = now() - FAILED_LOGIN_WINDOW
    failures = [r["at"] for r in db.query(
        "select at from login_attempts where username = ? and ok = 0 and at > ? order by at",
        [username, since])]
    if len(failures) >= MAX_FAILED_LOGINS:
        wait = int(failures[-MAX_FAILED_LOGINS] + FAILED_LOGIN_WINDOW - now()) + 1
        raise RateLimited(f"too many failed logins for {username!r}; try again in {wait} s")
    row = one(db, "select * from users where username = ?", [username])
    ok = bool(row) and verify_password(password, row["password_hash"])
    db["login_attempts"].insert({"username": username, "at": now(), "ok": int(ok)})
    if not ok:
        raise Invalid("wrong user name or password")
    if row["disabled"]:
        raise PermissionError(f"the account {username!r} is disabled")
    token = secrets.token_urlsafe(32)
    db["sessions"].insert({"token_hash": _token_hash(token), "user_id": row["id"],
                           "created_at": now(), "expires_at": now() + SESSION_SECONDS})
    return public(row), token


def user_for_token(db: sqlite_utils.Database, token: str | None) -> dict | None:
    """The enabled user a session token belongs to, or None (unknown, expired, logged out)."""
    if not token or not isinstance(token, str):
        return None
    row = one(db, """select users.* from sessions join users on users.id = sessions.user_id
                     where sessions.token_hash = ? and sessions.expires_at > ?
                     and users.disabled = 0""", [_token_hash(token), now()])
    return public(row) if row else None


def logout(db: sqlite_utils.Database, token: str | None) -> None:
    if token and isinstance(token, str):
        db.execute("delete from sessions where token_hash = ?", [_token_hash(token)])


def _token_hash(token: str) -> str:
    # Only a hash of the token is stored, so a copy of the database cannot log anyone in.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
