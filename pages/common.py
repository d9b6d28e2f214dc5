"""What every page shares: the database connection, the signed-in user, the chosen project,
and one way to show backend errors. UI glue only; rules live in backend/."""
from __future__ import annotations

import contextlib
import html
import json
import re
import sqlite3
import sys
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from backend import auth, db as database, paths, projects
from backend.errors import BoxwiseError

SESSION_COOKIE = "boxwise_session"



def leave_legacy_pages_mode() -> None:
    """Rerun through app.py when a page file runs on its own in Streamlit's legacy pages mode.

    Until the first st.navigation call of a server process, Streamlit serves a pages/ folder
    next to the main script the legacy way: a URL like /label runs pages/label.py without
    app.py and its login gate, under a sidebar listing every file. `serve.py` (make run)
    switches that mode off before the first visitor. Under a plain `streamlit run app.py`,
    sessions that start before the switch come here: a page run without app.py (and so
    without a signed-in user) reruns through app.py, which shows the login form.

    It is a call, not an import-time side effect: a rerun raised while `pages.common` was being
    imported made concurrent first visits fail with `ImportError: cannot import name 'common'`.
    """
    if st.session_state.get("user") is None and _page_without_app():
        PagesManager.uses_pages_directory = False
        st.rerun()


_APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _page_without_app() -> bool:
    # Streamlit runs a legacy-mode script from `_mpa_v1`; app.py on the stack means app.py's
    # own navigation (with its login gate) is running this page.
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == _APP:
            return False
        if frame.f_code.co_name == "_mpa_v1":
            return True
        frame = frame.f_back
    return False


def db():
    """This thread's connection to the Boxwise database (schema migrated on first use)."""
    return database.thread_db()


def current_user() -> dict | None:
    """The signed-in user: from this browser session, else from the session cookie."""
    token = st.session_state.get("session_token") or st.context.cookies.get(SESSION_COOKIE)
    if st.session_state.get("logged_out"):
        return None
    user = auth.user_for_token(db(), token)
    if user:
        st.session_state["session_token"] = token
    return user


def client_address() -> str | None:
    """The browser's address (None for localhost): the websocket's peer, or behind a proxy the
    operator trusts (`BOXWISE_TRUSTED_PROXIES`) the client its `X-Forwarded-For` names
    (`auth.client_address`). Failed logins are counted per user name and this address."""
    peer = st.context.ip_address
    peer = peer if isinstance(peer, str) else None  # (AppTest has no real connection)
    return auth.client_address(peer, st.context.headers.get_all("X-Forwarded-For"))


def remember_login(token: str) -> None:
    """Keep the login across browser refreshes: the session token in a cookie (server-side
    sessions make it revocable: logout and disabling a user end it)."""
    st.session_state["session_token"] = token
    st.session_state.pop("logged_out", None)
    # Written on the next run: the login form reruns the script at once, which would drop it.
    st.session_state["pending_cookie"] = (token, auth.SESSION_SECONDS)


def write_pending_cookie() -> None:
    pending = st.session_state.pop("pending_cookie", None)
    if pending:
        _set_cookie(*pending)


def forget_login() -> None:
    auth.logout(db(), st.session_state.pop("session_token", None)
                or st.context.cookies.get(SESSION_COOKIE))
    st.session_state["logged_out"] = True
    st.session_state["pending_cookie"] = ("", 0)


def _set_cookie(value: str, max_age: int) -> None:
    # json.dumps quotes for JavaScript; "<" escaped too, so no value can close the script tag.
    quoted = json.dumps(value).replace("<", "\\u003c")
    st.html(f"<script>document.cookie = {json.dumps(SESSION_COOKIE)} + '=' + "
            f"{quoted} + '; path=/; max-age={int(max_age)}; SameSite=Strict';</script>",
            unsafe_allow_javascript=True)


def user() -> dict:
    """The signed-in user; a page reached without one (after logout) stops with a hint."""
    leave_legacy_pages_mode()
    signed_in = st.session_state.get("user")
    if signed_in is None:
        st.info("You are logged out. Reload the page to log in.")
        st.stop()
    return signed_in


def shown(path) -> str:
    """A server path as the signed-in user may see it: relative to the data folder for
    non-admins (`backend.paths.shown`)."""
    return paths.shown(st.session_state.get("user"), path)


def shown_in(text: str) -> str:
    """`text` with the paths inside the data folder made relative for non-admins."""
    return paths.shown_in(st.session_state.get("user"), text)


def shown_rows(rows: list[dict]) -> list[dict]:
    """Table rows with `shown_in` applied to every text cell (errors, checkpoints, files)."""
    return [{key: shown_in(value) if isinstance(value, str) else value for key, value in row.items()}
            for row in rows]


def project() -> dict | None:
    """The project chosen in the sidebar, or None when there is none yet."""
    project_id = st.session_state.get("project_id")
    if project_id is None:
        return None
    try:
        return projects.get_project(db(), project_id)
    except BoxwiseError:
        st.session_state.pop("project_id", None)
        return None


def require_project() -> dict:
    """The chosen project; stops the page with a hint when there is none (or no one signed in)."""
    user()
    chosen = project()
    if chosen is None:
        st.info("Create or choose a project first (sidebar, or the Projects page).")
        st.stop()
    return chosen


# What would turn user text into markup in st.markdown, captions, labels and messages: HTML
# tags, links and images (`[`, `]`), LaTeX (`$`), emphasis and code.
_MARKUP = re.compile(r"([\\\[\]<>$*_`~])")


def plain(text) -> str:
    """User text (file, class and user names, comments) for Markdown: shown as typed, never a
    tag, link, image or formula."""
    return _MARKUP.sub(r"\\\1", str(text))


def html_text(text) -> str:
    """User text for st.html: every character that HTML would read as markup escaped."""
    return html.escape(str(text), quote=True)


@contextlib.contextmanager
def reported(success: str | None = None):
    """Run backend calls; show domain errors, permission refusals and a busy database
    (`Busy`: retryable, nothing changed) as messages, not tracebacks. A message is plain text
    (it may quote file, class and user names), so it reaches Markdown through `plain`."""
    try:
        yield
    except PermissionError as exc:
        st.error(f"Not allowed: {plain(shown_in(str(exc)))}")
    except BoxwiseError as exc:
        st.error(plain(shown_in(str(exc))))
    except sqlite3.OperationalError as exc:
        # A write outside backend transactions that timed out on the lock: same retryable message.
        if not database.is_busy(exc):
            raise
        st.error(str(database.busy_error()))
    else:
        if success:
            st.toast(success)
