"""Behind a reverse proxy the operator trusts (here: localhost, `BOXWISE_TRUSTED_PROXIES`), the
real app counts failed logins per client address from `X-Forwarded-For`: one client's guesses
lock that client out, not another browser behind the same proxy."""
from __future__ import annotations

import pytest

from tests.e2e.browser import TIMEOUT_MS, playwright_api, wait_idle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # ~70 s: seven page loads with logins
expect = playwright_api.expect


@pytest.fixture
def proxied_app(monkeypatch, db, admin, data_dir):
    monkeypatch.setenv("BOXWISE_TRUSTED_PROXIES", "127.0.0.1,::1")  # the server inherits it


def _log_in(browser, url: str, forwarded_for: str, password: str):
    context = browser.new_context(viewport={"width": 1200, "height": 900},
                                  extra_http_headers={"X-Forwarded-For": forwarded_for})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(url)
    page.get_by_role("textbox", name="User name").fill("admin")
    page.get_by_role("textbox", name="Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()
    wait_idle(page)
    return context, page


def test_a_trusted_proxys_forwarded_for_separates_clients_at_login(db, proxied_app, app_server, browser):
    # The client's own claim comes first; the proxy appends the address it saw.
    attacker = "198.51.100.1, 203.0.113.9"
    for _ in range(5):
        context, page = _log_in(browser, app_server, attacker, "guess-guess")
        expect(page.get_by_text("wrong user name or password")).to_be_visible()
        context.close()
    assert db.execute("select address, count(*) from login_attempts group by address").fetchall() == \
        [("203.0.113.9", 5)]
    context, page = _log_in(browser, app_server, attacker, "admin-password")
    expect(page.get_by_text("too many failed logins for 'admin' from this address")).to_be_visible()
    context.close()
    # The admin's own browser behind the same proxy is another client.
    context, page = _log_in(browser, app_server, "192.0.2.44", "admin-password")
    page.get_by_text("Signed in as admin").wait_for()
    context.close()
    assert db.execute("select address, ok from login_attempts where ok = 1").fetchall() == [("192.0.2.44", 1)]
