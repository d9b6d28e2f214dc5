"""Login as a browser meets it: the gate holds for every URL, the login survives a refresh
through its cookie, and logout ends it for good."""
from __future__ import annotations

import pytest

from backend import auth
from backend import projects
from tests.e2e.browser import TIMEOUT_MS, playwright_api, wait_idle

pytestmark = pytest.mark.e2e
expect = playwright_api.expect


@pytest.fixture
def app_url(db, admin, app_server):
    auth.add_user(db, admin, "ann", "ann-password", "labeler")
    projects.create_project(db, admin, "pets", ["cat"])
    return app_server


def test_login_gate_cookie_refresh_and_logout(db, app_url, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()

    # The very first request of the server is a page URL: it must show the login, not the page.
    page.goto(f"{app_url}/users")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    expect(page.get_by_text("Add user")).to_have_count(0)

    page.get_by_role("textbox", name="User name").fill("ann")
    page.get_by_role("textbox", name="Password", exact=True).fill("ann-password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Signed in as ann").wait_for()
    wait_idle(page)
    cookie = next(c for c in context.cookies() if c["name"] == "boxwise_session")
    assert auth.user_for_token(db, cookie["value"])["username"] == "ann"

    page.reload()
    page.get_by_text("Signed in as ann").wait_for()  # still signed in after a refresh
    # A labeler's navigation has no Users page, and its URL leads nowhere near it.
    expect(page.get_by_role("link", name="Users")).to_have_count(0)

    page.goto(f"{app_url}/account")
    page.get_by_role("main").get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    wait_idle(page)
    assert auth.user_for_token(db, cookie["value"]) is None
    page.reload()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert not any(c["name"] == "boxwise_session" and c["value"] for c in context.cookies())
    context.close()
