"""Parallel first visits right after the server starts (issue 12, item 7): every browser gets
the login form, none an `ImportError` or Streamlit's legacy pages sidebar.

Until the first `st.navigation` call of a server process, Streamlit treats the `pages/` folder
beside app.py as a legacy multipage app; sessions that start in that window run a page without
app.py. Each test starts a fresh server and opens all its browser tabs at once, recording
from the first DOM change whether the legacy sidebar or an exception ever appeared.
"""
from __future__ import annotations

import pytest

from backend import auth, projects
from tests.e2e.browser import TIMEOUT_MS

pytestmark = pytest.mark.e2e

VISITS = 8
PATHS = ["", "label", "users", "review", "", "account", "tfrecords", "config"]


# Records whether the legacy sidebar or an exception was ever on the page, even for one run.
WATCH = """
window.__seen = {nav: 0, exception: 0, text: ""};
new MutationObserver(() => {
  if (document.querySelector("[data-testid=stSidebarNav]")) window.__seen.nav = 1;
  const failure = document.querySelector("[data-testid=stException]");
  if (failure) { window.__seen.exception = 1; window.__seen.text = failure.innerText; }
}).observe(document, {childList: true, subtree: true});
"""


def _first_visits(app_url: str, browser) -> list[dict]:
    contexts = [browser.new_context(viewport={"width": 1200, "height": 800}) for _ in range(VISITS)]
    pages = []
    for context, path in zip(contexts, PATHS):
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(WATCH)
        page = context.new_page()
        page.goto(f"{app_url}/{path}", wait_until="commit")  # all tabs connect at once
        pages.append((path, page))
    visits = []
    for path, page in pages:
        page.get_by_role("button", name="Log in").wait_for()
        page.wait_for_timeout(500)
        seen = page.evaluate("window.__seen")
        visits.append({"path": path, **seen,
                       "login": page.get_by_role("button", name="Log in").count()})
    for context in contexts:
        context.close()
    return visits


@pytest.mark.slow
def test_parallel_first_visits_all_get_the_login_form(db, admin, app_server, browser):
    projects.create_project(db, admin, "pets", ["cat"])
    auth.add_user(db, admin, "ann", "ann-password", "labeler")
    visits = _first_visits(app_server, browser)
    # serve.py (make run) switches the legacy mode off before anyone connects: not even a flash.
    assert [(v["path"], v["nav"], v["exception"], v["text"], v["login"]) for v in visits] == \
        [(path, 0, 0, "", 1) for path in PATHS]


@pytest.mark.slow
def test_parallel_first_visits_under_plain_streamlit_run_never_fail(db, admin, plain_app_server,
                                                                    browser):
    projects.create_project(db, admin, "pets", ["cat"])
    visits = _first_visits(plain_app_server, browser)
    # The legacy sidebar may flash for the sessions that connect before the first switch;
    # every one of them ends on the login form without an error.
    assert [(v["path"], v["exception"], v["text"], v["login"]) for v in visits] == \
        [(path, 0, "", 1) for path in PATHS]
