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
    assert stored.startswith("scrypt$16384$8$1$")
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
    with pytest.raises(auth.RateLimited, match="too many failed logins for 'admin'"):
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
    with pytest.raises(Invalid, match="at least 8"):
        auth.add_user(db, admin, "shorty", "short", "labeler")
    with pytest.raises(Invalid, match="role must be one of"):
        auth.add_user(db, admin, "x", "long-password", "superuser")
    with pytest.raises(Invalid, match="already exists"):
        auth.add_user(db, admin, "admin", "long-password", "viewer")
    with pytest.raises(Invalid, match="without spaces"):
        auth.add_user(db, admin, "two words", "long-password", "viewer")
