"""The app as a user meets it, through Streamlit's AppTest: first admin, login, projects, upload."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backend import auth, images, projects
from tests.helpers import image_bytes

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60)


def log_in(at: AppTest, username: str, password: str) -> AppTest:
    at.run()
    at.text_input[0].input(username)
    at.text_input[1].input(password)
    at.button[0].click().run()
    return at


def test_first_visit_creates_the_admin_account(db):
    at = app().run()
    assert at.title[0].value == "Welcome to Boxwise"
    at.text_input[0].input("boss")
    at.text_input[1].input("secret-pass")
    at.text_input[2].input("secret-pass")
    at.button[0].click().run()
    assert not at.exception
    assert [u["username"] for u in auth.list_users(db)] == ["boss"]
    assert auth.list_users(db)[0]["role"] == "admin"
    assert at.title[0].value == "Boxwise"  # the home page of a signed-in admin
    assert any("Create the demo project" == b.label for b in at.button)


def test_mismatched_passwords_create_nothing(db):
    at = app().run()
    at.text_input[0].input("boss")
    at.text_input[1].input("secret-pass")
    at.text_input[2].input("other-pass")
    at.button[0].click().run()
    assert at.error[0].value == "The passwords differ."
    assert not auth.has_users(db)


def test_login_wrong_password_then_right_and_logout(db, admin):
    at = log_in(app(), "admin", "wrong-password")
    assert at.error[0].value == "wrong user name or password"
    at.text_input[0].input("admin")
    at.text_input[1].input("admin-password")
    at.button[0].click().run()
    assert not at.exception
    assert "Signed in as **admin** (admin)" in [c.value for c in at.sidebar.caption]
    token = at.session_state["session_token"]
    assert auth.user_for_token(db, token)["username"] == "admin"
    at.switch_page("pages/account.py").run()
    next(b for b in at.button if b.label == "Log out").click().run()
    assert auth.user_for_token(db, token) is None
    assert at.session_state["logged_out"] is True
    fresh = app()
    fresh.session_state["session_token"] = token  # the old cookie no longer logs anyone in
    fresh.run()
    assert [b.label for b in fresh.button] == ["Log in"]


def test_session_cookie_restores_login_after_refresh(db, admin):
    _, token = auth.login(db, "admin", "admin-password")
    at = app()
    at.session_state["session_token"] = token  # what the cookie gives a refreshed page
    at.run()
    assert "Signed in as **admin** (admin)" in [c.value for c in at.sidebar.caption]


def test_demo_button_makes_the_sample_project(db, admin):
    at = log_in(app(), "admin", "admin-password")
    next(b for b in at.button if b.label == "Create the demo project").click().run()
    assert not at.exception
    demo = projects.get_project(db, "demo-shapes")
    assert images.stats(db, demo["id"])["images"] == 60


def test_admin_creates_a_project_with_classes(db, admin):
    at = log_in(app(), "admin", "admin-password")
    at.switch_page("pages/projects.py").run()
    assert not at.exception
    form_inputs = at.text_input
    form_inputs[0].input("birds")
    form_inputs[1].input("gull, tern ,  heron")
    next(b for b in at.button if b.label == "Create project").click().run()
    assert not at.exception
    made = projects.get_project(db, "birds")
    assert [(label["name"], label["label_map_id"]) for label in projects.list_labels(db, made["id"])] == [
        ("gull", 1), ("tern", 2), ("heron", 3)]


def test_upload_reports_each_rejected_file(db, admin, project):
    at = log_in(app(), "admin", "admin-password")
    at.switch_page("pages/upload.py").run()
    assert not at.exception
    at.file_uploader[0].set_value([
        ("good.jpg", image_bytes((40, 30)), "image/jpeg"),
        ("also-good.png", image_bytes((40, 30), (0, 0, 0), "PNG"), "image/png"),
        ("empty.jpg", b"", "image/jpeg"),
        ("fake.png", b"<html>not a picture</html>", "image/png"),
    ])
    next(b for b in at.button if b.label == "Add to project").click().run()
    assert not at.exception
    assert at.success[0].value == "2 accepted, 0 duplicates skipped, 2 rejected"
    rejected = at.dataframe[0].value
    assert list(rejected["file"]) == ["empty.jpg", "fake.png"]
    assert list(rejected["message"]) == ["empty file",
                                         "not an image (the content is not a format Pillow can read)"]
    assert images.stats(db, project["id"])["images"] == 2


@pytest.mark.parametrize("role, page", [("viewer", "pages/upload.py"), ("viewer", "pages/users.py"),
                                        ("labeler", "pages/upload.py"), ("reviewer", "pages/users.py")])
def test_pages_a_role_may_not_use_are_not_registered(db, users, role, page):
    at = log_in(app(), role, f"{role}-password")
    assert not at.exception
    with pytest.raises(ValueError):
        at.switch_page(page)


def test_admin_adds_and_disables_a_user_on_the_users_page(db, admin):
    at = log_in(app(), "admin", "admin-password")
    at.switch_page("pages/users.py").run()
    at.text_input[0].input("carol")
    at.selectbox[0].select("reviewer")
    at.text_input[1].input("carol-password")
    next(b for b in at.button if b.label == "Add user").click().run()
    assert not at.exception
    carol = auth.get_user(db, "carol")
    assert (carol["role"], carol["disabled"]) == ("reviewer", 0)
    at.selectbox[1].select(carol["id"]).run()
    next(b for b in at.button if b.label == "Disable").click().run()
    assert auth.get_user(db, "carol")["disabled"] == 1
    with pytest.raises(PermissionError, match="disabled"):
        auth.login(db, "carol", "carol-password")
