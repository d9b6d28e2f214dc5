import pytest

from backend import auth, projects
from backend.errors import Invalid


def test_first_admin_only_once(db):
    assert not auth.has_users(db)
    admin = auth.create_first_admin(db, "root", "long-password")
    assert admin["role"] == "admin" and "password_hash" not in admin
    with pytest.raises(PermissionError):
        auth.create_first_admin(db, "other", "long-password")


def test_password_is_stored_as_scrypt_hash_never_plain(db, admin):
    stored = db.execute("select password_hash from users where id = ?", [admin["id"]]).fetchone()[0]
    assert stored.startswith(f"scrypt${auth.scrypt_n()}$8$1$")
    assert "admin-password" not in stored
    assert auth.verify_password("admin-password", stored)
    assert not auth.verify_password("admin-passwore", stored)


def test_login_logout_and_session_token(db, admin):
    user, token = auth.login(db, "admin", "admin-password")
    assert auth.user_for_token(db, token)["id"] == user["id"]
    stored = db.execute("select token_hash from sessions").fetchone()[0]
    assert token not in stored
    auth.logout(db, token)
    assert auth.user_for_token(db, token) is None
    assert auth.user_for_token(db, "forged") is None


def test_wrong_password_and_rate_limit(db, admin):
    for _ in range(auth.MAX_FAILED_LOGINS):
        with pytest.raises(Invalid, match="wrong user name or password"):
            auth.login(db, "admin", "nope-nope")
    with pytest.raises(auth.RateLimited, match="too many failed logins for 'admin' from this address"):
        auth.login(db, "admin", "admin-password")  # even the right password waits
    # other accounts are not affected
    auth.add_user(db, admin, "bob", "bob-password", "labeler")
    assert auth.login(db, "bob", "bob-password")[0]["username"] == "bob"


def test_disabled_user_cannot_log_in_and_loses_sessions(db, users):
    admin, labeler = users["admin"], users["labeler"]
    _, token = auth.login(db, "labeler", "labeler-password")
    auth.set_disabled(db, admin, labeler["id"], True)
    assert auth.user_for_token(db, token) is None
    with pytest.raises(PermissionError, match="disabled"):
        auth.login(db, "labeler", "labeler-password")
    auth.set_disabled(db, admin, labeler["id"], False)
    assert auth.login(db, "labeler", "labeler-password")[0]["id"] == labeler["id"]


def test_reset_password_ends_sessions(db, users):
    _, token = auth.login(db, "viewer", "viewer-password")
    auth.reset_password(db, users["admin"], users["viewer"]["id"], "brand-new-pass")
    assert auth.user_for_token(db, token) is None
    assert auth.login(db, "viewer", "brand-new-pass")[0]["username"] == "viewer"
    with pytest.raises(Invalid):
        auth.login(db, "viewer", "viewer-password")


@pytest.mark.parametrize("role", ["reviewer", "labeler", "viewer"])
def test_only_admins_manage_users_and_projects(db, users, role):
    actor = users[role]
    with pytest.raises(PermissionError, match=f"{role} \\({role}\\) may not manage users"):
        auth.add_user(db, actor, "x", "password-x", "viewer")
    with pytest.raises(PermissionError):
        auth.reset_password(db, actor, users["admin"]["id"], "hijacked-pass")
    with pytest.raises(PermissionError, match="manage projects"):
        projects.create_project(db, actor, "mine")


def test_roles_and_rights():
    assert auth.can({"role": "viewer"}, "view")
    assert not auth.can({"role": "viewer"}, "label")
    assert auth.can({"role": "labeler"}, "label") and not auth.can({"role": "labeler"}, "review")
    assert auth.can({"role": "reviewer"}, "train") and not auth.can({"role": "reviewer"}, "manage_users")
    assert not auth.can(None, "view")


def test_bad_user_input(db, admin):
    with pytest.raises(Invalid, match="at least 10"):
        auth.add_user(db, admin, "shorty", "short", "labeler")
    with pytest.raises(Invalid, match="role must be one of"):
        auth.add_user(db, admin, "x", "long-password", "superuser")
    with pytest.raises(Invalid, match="already exists"):
        auth.add_user(db, admin, "admin", "long-password", "viewer")
    with pytest.raises(Invalid, match="without spaces"):
        auth.add_user(db, admin, "two words", "long-password", "viewer")


# ---------------------------------------------------------------- login hardening (issue 12, item 5)


def test_lockout_is_per_user_name_and_client_address(db, admin):
    for _ in range(auth.MAX_FAILED_LOGINS):
        with pytest.raises(Invalid, match="wrong user name or password"):
            auth.login(db, "admin", "guess-guess", "203.0.113.9")
    with pytest.raises(auth.RateLimited, match="from this address"):
        auth.login(db, "admin", "admin-password", "203.0.113.9")
    # The stranger's guesses do not lock the admin out from their own machine.
    assert auth.login(db, "admin", "admin-password", "198.51.100.4")[0]["username"] == "admin"
    assert auth.login(db, "admin", "admin-password")[0]["username"] == "admin"


def _guess(path, password):
    from backend import db as database
    connection = database.connect(path)
    try:
        auth.login(connection, "admin", password)
        return "ok"
    except auth.RateLimited:
        return "limited"
    except Invalid:
        return "wrong"
    finally:
        connection.conn.close()


def test_twenty_parallel_wrong_guesses_are_all_counted(db, admin, data_dir):
    from concurrent.futures import ThreadPoolExecutor

    path = data_dir / "boxwise.db"
    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(lambda i: _guess(path, f"guess-number-{i}"), range(20)))
    # Before: all 20 were checked against the hash (each read the count before any wrote).
    assert sorted(outcomes) == ["limited"] * 15 + ["wrong"] * auth.MAX_FAILED_LOGINS
    assert db.execute("select count(*), sum(ok) from login_attempts").fetchone() == \
        (auth.MAX_FAILED_LOGINS, 0)


def test_unknown_user_name_costs_one_hash_like_a_known_one(db, admin, monkeypatch):
    calls = []
    real = auth.hashlib.scrypt

    def counting(*args, **kwargs):
        calls.append(kwargs["n"])
        return real(*args, **kwargs)

    auth._dummy_hash(auth.scrypt_n())  # made once per process, not per attempt
    monkeypatch.setattr(auth.hashlib, "scrypt", counting)
    with pytest.raises(Invalid, match="^wrong user name or password$"):
        auth.login(db, "admin", "not-the-password")
    with pytest.raises(Invalid, match="^wrong user name or password$"):
        auth.login(db, "nobody-of-that-name", "not-the-password")
    assert calls == [auth.scrypt_n(), auth.scrypt_n()]


def test_production_cost_is_scrypt_2_17_and_old_hashes_upgrade_at_login(db, admin, monkeypatch):
    monkeypatch.setenv("BOXWISE_SCRYPT_N", str(2**14))
    old_hash = auth.hash_password("carol-password")
    db["users"].insert({"username": "carol", "password_hash": old_hash, "role": "labeler",
                        "disabled": 0})
    monkeypatch.delenv("BOXWISE_SCRYPT_N")
    assert auth.scrypt_n() == 2**17
    with pytest.raises(Invalid):
        auth.login(db, "carol", "carol-passwore")
    stored = db.execute("select password_hash from users where username = 'carol'").fetchone()[0]
    assert stored == old_hash  # a wrong password changes nothing
    auth.login(db, "carol", "carol-password")
    stored = db.execute("select password_hash from users where username = 'carol'").fetchone()[0]
    assert stored.startswith("scrypt$131072$8$1$") and not auth.needs_rehash(stored)
    assert auth.login(db, "carol", "carol-password")[0]["username"] == "carol"


@pytest.mark.parametrize("password, rule", [
    ("12345678", "at least 10 characters"),
    ("1234567890", "only digits"),
    ("0000000000000", "only digits"),
    ("aaaaaaaaaaaa", "one character repeated"),
    ("Password123", "most common passwords"),
    ("qwertyuiop", "most common passwords"),
    ("daniel-long-name", "the user name"),
])
def test_weak_passwords_are_refused(db, admin, password, rule):
    with pytest.raises(Invalid, match=rule):
        auth.add_user(db, admin, "daniel-long-name", password, "labeler")
    assert [u["username"] for u in auth.list_users(db)] == ["admin"]


def test_changing_ones_own_password_needs_the_current_one(db, users):
    labeler = users["labeler"]
    _, token = auth.login(db, "labeler", "labeler-password")
    with pytest.raises(Invalid, match="give your current one"):
        auth.reset_password(db, labeler, labeler["id"], "a-new-password")
    with pytest.raises(Invalid, match="give your current one"):
        auth.reset_password(db, users["admin"], users["admin"]["id"], "a-new-password")
    with pytest.raises(Invalid, match="the current password is wrong"):
        auth.change_password(db, labeler, "not-my-password", "a-new-password")
    assert auth.user_for_token(db, token)["id"] == labeler["id"]  # nothing changed
    auth.change_password(db, labeler, "labeler-password", "a-new-password")
    assert auth.user_for_token(db, token) is None
    assert auth.login(db, "labeler", "a-new-password")[0]["id"] == labeler["id"]


def test_account_page_asks_for_the_current_password(db, users):
    from tests.helpers import signed_in

    at = signed_in(db, "labeler", "pages/account.py")
    assert [t.label for t in at.text_input] == ["Current password", "New password",
                                                "Repeat new password"]
    at.text_input[0].input("not-my-password")
    at.text_input[1].input("a-new-password")
    at.text_input[2].input("a-new-password")
    next(b for b in at.button if b.label == "Change password").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["the current password is wrong"]
    assert auth.login(db, "labeler", "labeler-password")[0]["username"] == "labeler"


def test_error_details_never_reach_the_browser():
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit/config.toml")
                           .read_text())
    assert config["client"]["showErrorDetails"] is False


def test_no_full_garbage_collection_after_every_script_run():
    """Streamlit's collection after each run walked every object of the process and held each
    Label page rerun 0.3–0.7 s under load (BENCHMARKS.md); app.py freezes the imports instead."""
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit/config.toml")
                           .read_text())
    assert config["runner"]["postScriptGC"] is False
