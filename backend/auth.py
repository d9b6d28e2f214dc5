"""Users, password hashing, login sessions, roles and the permission checks every write goes through.

An *actor* is a user row (dict with at least `id`, `username`, `role`). Backend functions
that change state take the actor and call `require(actor, action)` first, so a viewer is
refused by the backend itself, whichever face (page, CLI, script) called it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
import threading
from functools import lru_cache
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
              "manage_projects", "assign", "external_runner", "configure_server"},
}
# In words, for README's Roles table (tests/test_roles.py checks it against the sets above).
ACTION_WORDS = {
    "view": "look at projects, images with their boxes and history, progress, dataset versions "
            "(also in the TFRecord browser), configs (and validate them), runs and models; try "
            "models on the Predict page",
    "label": "take image leases; draw, save and submit boxes; skip; mark \"no objects\"; accept "
             "or reject model drafts",
    "review": "approve and reject submitted images",
    "ingest": "upload images; import annotations; upload record files to the TFRecord browser",
    "export": "write dataset versions and their zips; extract images from record sets",
    "train": "save configs; start, cancel, resume, retrain, evaluate and export runs of the "
             "built-in trainer; register models, mark one current, run batch prediction (drafts)",
    "read_urls": "open record sets and label maps by URL (`gs://…`) in the TFRecord browser",
    "manage_users": "add users, change roles, disable accounts, reset passwords",
    "manage_projects": "create, rename and archive projects (and the demo project); add, rename, "
                       "recolour, reorder and delete classes, also from imports and label maps",
    "assign": "assign images to labelers; release anyone's leases",
    "external_runner": "start runs on an external runner the server's owner configured",
    "configure_server": "change the server settings: runners, allowed folders (the command "
                        "line; no page offers it)",
}

# The command line runs on the server with the data directory in hand: it acts as an admin,
# and it alone may use any path on the server (`is_local`, `backend.paths`).
CLI_ACTOR: dict[str, Any] = {"id": None, "username": "cli", "role": "admin"}

SESSION_SECONDS = 14 * 24 * 3600
MAX_FAILED_LOGINS = 5  # per user name and client address
# Per user name from all addresses together: caps guessing spread over many addresses, while
# one address alone cannot lock anyone out.
MAX_FAILED_LOGINS_PER_NAME = 50
FAILED_LOGIN_WINDOW = 15 * 60
MIN_PASSWORD_LENGTH = 10
# Refused whatever their length: keyboard runs and the passwords every guessing list starts with.
COMMON_PASSWORDS = frozenset({
    "password", "password1", "password12", "password123", "password1234", "passw0rd",
    "qwertyuiop", "qwertyuiop1", "asdfghjkl", "asdfghjkl1", "1q2w3e4r5t", "q1w2e3r4t5",
    "qwerty1234", "1qaz2wsx3edc", "abcdefghij", "abcd1234", "abc1234567", "iloveyou12",
    "letmein123", "welcome123", "administrator", "admin12345", "changeme", "changeme123",
    "trustno1", "monkey1234", "dragon1234", "football12", "baseball12", "sunshine12",
    "boxwise123", "boxwise1234",
})

# scrypt with N=2**17, r=8 needs 128 MiB and ~0.5 s per hash on this class of machine.
# BOXWISE_SCRYPT_N lowers N for the test suite only (the production value is tested once).
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**17, 8, 1
# At most this many hashes at once per server process: 20 parallel logins must not ask for
# 20 x 128 MiB.
_HASHING = threading.BoundedSemaphore(2)


class RateLimited(Invalid):
    """Too many failed logins for a user name from one client address in the window."""


def can(actor: dict | None, action: str) -> bool:
    return bool(actor) and action in _ROLE_ACTIONS.get(actor.get("role"), set())


def is_local(actor: dict | None) -> bool:
    """Whether `actor` is the command line itself (this very object, never a user row): an
    operator on the machine, who may use any path on the server."""
    return actor is CLI_ACTOR


def require(actor: dict | None, action: str) -> None:
    """Raise PermissionError unless `actor`'s role allows `action`."""
    if not can(actor, action):
        who = actor.get("username") if actor else "anonymous"
        role = actor.get("role") if actor else "no role"
        raise PermissionError(f"{who} ({role}) may not {action.replace('_', ' ')}")


# ---------------------------------------------------------------- passwords


def scrypt_n() -> int:
    """The scrypt cost for new hashes: 2**17, or BOXWISE_SCRYPT_N (a power of two) in tests."""
    n = int(os.environ.get("BOXWISE_SCRYPT_N", _SCRYPT_N))
    if n < 2 or n & (n - 1) or n > 2**20:
        raise ValueError(f"BOXWISE_SCRYPT_N must be a power of two up to 2**20, not {n}")
    return n


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # OpenSSL refuses more than 32 MiB unless told: allow exactly what these parameters need.
    maxmem = 128 * r * (n + p + 2) + 2**20
    with _HASHING:
        return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen,
                              maxmem=maxmem)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    n = scrypt_n()
    digest = _scrypt(password, salt, n, _SCRYPT_R, _SCRYPT_P, 32)
    return "scrypt${}${}${}${}${}".format(n, _SCRYPT_R, _SCRYPT_P,
                                          base64.b64encode(salt).decode(),
                                          base64.b64encode(digest).decode())


def _hash_params(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return None
        return int(n), int(r), int(p), base64.b64decode(salt), base64.b64decode(digest)
    except ValueError:
        return None


def verify_password(password: str, stored: str) -> bool:
    params = _hash_params(stored)
    if params is None:
        return False
    n, r, p, salt, digest = params
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(digest)), digest)


def needs_rehash(stored: str) -> bool:
    """True when `stored` was made with other scrypt parameters than new hashes get."""
    params = _hash_params(stored)
    return params is None or params[:3] != (scrypt_n(), _SCRYPT_R, _SCRYPT_P)


@lru_cache(maxsize=4)
def _dummy_hash(n: int) -> str:
    # Unknown user names are checked against this, so they cost the same time as known ones.
    return hash_password(secrets.token_urlsafe(16))


def check_password_rules(password: str, username: str = "") -> None:
    """The minimum rules: 10 characters or more, not only digits, not one character repeated,
    not a common password, not the user name."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if password.isdigit():
        raise Invalid("password must not be only digits")
    if len(set(password)) == 1:
        raise Invalid("password must not be one character repeated")
    if password.lower() in COMMON_PASSWORDS:
        raise Invalid("password is one of the most common passwords; choose another")
    if username and password.lower() == username.strip().lower():
        raise Invalid("password must not be the user name")


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
    if has_users(db):
        raise PermissionError("the first admin already exists; ask an admin for an account")
    password_hash = _new_user_hash(username, password, "admin")
    with transaction(db):
        if has_users(db):
            raise PermissionError("the first admin already exists; ask an admin for an account")
        return _insert_user(db, username, password_hash, "admin")


def add_user(db: sqlite_utils.Database, actor: dict, username: str, password: str,
             role: str) -> dict:
    require(actor, "manage_users")
    password_hash = _new_user_hash(username, password, role)
    with transaction(db):
        return _insert_user(db, username, password_hash, role)


def _new_user_hash(username: str, password: str, role: str) -> str:
    """Check a new account's fields and hash its password (before any write transaction:
    the hash takes ~0.5 s and must not hold the database's write lock)."""
    username = _check_username(username)
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    check_password_rules(password, username)
    return hash_password(password)


def _insert_user(db, username: str, password_hash: str, role: str) -> dict:
    username = _check_username(username)
    if one(db, "select id from users where username = ?", [username]):
        raise Invalid(f"user {username!r} already exists")
    user_id = db["users"].insert({"username": username, "password_hash": password_hash,
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
    """An admin sets another user's password; the user's sessions end. For one's own password
    use `change_password`, which asks for the current one."""
    if actor.get("id") is not None and actor.get("id") == user_id:
        raise Invalid("to change your own password, give your current one (My account page)")
    require(actor, "manage_users")
    target = get_user(db, user_id)
    check_password_rules(password, target["username"])
    _set_password(db, user_id, hash_password(password))


def change_password(db: sqlite_utils.Database, actor: dict, current: str, new: str) -> None:
    """Change the actor's own password, given the current one; ends all of its sessions."""
    row = one(db, "select * from users where id = ?", [actor.get("id")])
    if row is None:
        raise NotFound("no such account")
    if not verify_password(current or "", row["password_hash"]):
        raise Invalid("the current password is wrong")
    check_password_rules(new, row["username"])
    _set_password(db, row["id"], hash_password(new))


def _set_password(db, user_id: int, password_hash: str) -> None:
    with transaction(db):
        db["users"].update(user_id, {"password_hash": password_hash})
        db.execute("delete from sessions where user_id = ?", [user_id])


# ---------------------------------------------------------------- login sessions


LOCAL_ADDRESS = "local"
_LOOPBACK = ipaddress.ip_address("127.0.0.1")


def client_address(peer: str | None, forwarded_for: list[str] | str | None = None) -> str | None:
    """The client's address for the login limits. `peer` is the connection's address (None
    for localhost, as Streamlit gives it); `forwarded_for`, the `X-Forwarded-For` header
    value(s). The header is believed only when `peer` is a proxy the operator trusts
    (`server_settings.trusted_proxies`): the client is then its right-most entry that is not a
    trusted proxy (entries left of that are the client's own claims and are skipped). Without
    a trusted proxy, or with a header that does not parse, the peer's address is the answer."""
    from backend import server_settings
    trusted = server_settings.trusted_proxies()

    def parse(text: str):
        address = ipaddress.ip_address(text.strip())
        # An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d: compare it as IPv4.
        return getattr(address, "ipv4_mapped", None) or address

    def is_trusted(address) -> bool:
        return any(address.version == net.version and address in net for net in trusted)
    try:
        nearest = parse(peer) if peer else _LOOPBACK
    except ValueError:
        return peer
    if not trusted or not forwarded_for or not is_trusted(nearest):
        return peer
    values = [forwarded_for] if isinstance(forwarded_for, str) else list(forwarded_for)
    hops = [hop.strip() for value in values for hop in str(value).split(",")]
    for hop in reversed(hops):
        try:
            address = parse(hop)
        except ValueError:
            return peer  # a header this proxy did not write cleanly: trust only the connection
        if not is_trusted(address):
            return str(address)
    return peer


def login(db: sqlite_utils.Database, username: str, password: str,
          address: str | None = None) -> tuple[dict, str]:
    """Check a password and open a session; returns (user, session token).

    `address` is the client's address (None: a local client; `client_address` reads it behind
    a trusted proxy). After MAX_FAILED_LOGINS failures for a name from one address within
    FAILED_LOGIN_WINDOW seconds, further attempts from that address are refused until the
    oldest failure leaves the window, right password or not; other addresses can still log in
    as that name, until MAX_FAILED_LOGINS_PER_NAME failures from all addresses together lock
    the name for everyone the same way. Each attempt is counted as a failure
    before its password is checked, in one write transaction with the count, so parallel
    guesses cannot pass the limit together. Unknown names are checked against a dummy hash:
    they take as long as known ones.
    """
    username = (username or "").strip()
    password = password if isinstance(password, str) else ""
    address = address[:64] if isinstance(address, str) and address else LOCAL_ADDRESS
    with transaction(db):
        started = now()
        failures = [(r["at"], r["address"]) for r in db.query(
            "select at, address from login_attempts where username = ? and ok = 0 and at > ? "
            "order by at", [username, started - FAILED_LOGIN_WINDOW])]
        here = [at for at, where in failures if where == address]
        if len(here) >= MAX_FAILED_LOGINS:
            wait = int(here[-MAX_FAILED_LOGINS] + FAILED_LOGIN_WINDOW - started) + 1
            raise RateLimited(f"too many failed logins for {username!r} from this address; "
                              f"try again in {wait} s")
        if len(failures) >= MAX_FAILED_LOGINS_PER_NAME:
            wait = int(failures[-MAX_FAILED_LOGINS_PER_NAME][0] + FAILED_LOGIN_WINDOW - started) + 1
            raise RateLimited(f"too many failed logins for {username!r} from all addresses together; "
                              f"try again in {wait} s")
        attempt = db["login_attempts"].insert({"username": username, "address": address,
                                               "at": started, "ok": 0}).last_pk
        row = one(db, "select * from users where username = ?", [username])
    stored = row["password_hash"] if row else _dummy_hash(scrypt_n())
    ok = verify_password(password, stored) and row is not None
    if not ok:
        raise Invalid("wrong user name or password")
    # Old, cheaper hashes are replaced while the password is at hand (hashed outside the
    # write transaction: a hash takes ~0.5 s and the write lock must stay short).
    upgraded = hash_password(password) if needs_rehash(stored) else None
    with transaction(db):
        db.execute("update login_attempts set ok = 1 where id = ?", [attempt])
        if upgraded:
            db.execute("update users set password_hash = ? where id = ? and password_hash = ?",
                       [upgraded, row["id"], stored])
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
