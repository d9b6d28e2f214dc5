"""Boxwise: entry point. Navigation, the login gate and the project picker; nothing else."""
from __future__ import annotations

import gc
from pathlib import Path

import streamlit as st

from backend import auth, cleanup, projects, run_lifecycle
from pages import common

HERE = Path(__file__).resolve().parent
# Once per process: what the first run imported (Streamlit, pandas, the backend: about 95,000
# objects for those imports alone) lives as long as the process, so Python's cyclic collector stops walking it
# (.streamlit/config.toml also turns off Streamlit's full collection after every run).
if not gc.get_freeze_count():
    gc.freeze()
st.set_page_config(page_title="Boxwise", page_icon=":material/crop_free:", layout="wide")

# (file, title, icon, action the role needs to see it). Pages check rights again in the backend.
PAGES = [
    ("pages/home.py", "Home", ":material/home:", "view"),
    ("pages/label.py", "Label", ":material/draw:", "label"),
    ("pages/review.py", "Review", ":material/fact_check:", "review"),
    ("pages/dashboard.py", "Progress", ":material/monitoring:", "view"),
    ("pages/upload.py", "Upload", ":material/upload:", "ingest"),
    ("pages/dataset.py", "Datasets", ":material/dataset:", "view"),
    ("pages/tfrecords.py", "TFRecord browser", ":material/search:", "view"),
    ("pages/config.py", "Configs", ":material/tune:", "view"),
    ("pages/runs.py", "Runs", ":material/model_training:", "view"),
    ("pages/models.py", "Models", ":material/deployed_code:", "view"),
    ("pages/zoo.py", "Starting points", ":material/rocket_launch:", "view"),
    ("pages/predict.py", "Predict", ":material/center_focus_strong:", "view"),
    ("pages/projects.py", "Projects & classes", ":material/folder_open:", "view"),
    ("pages/users.py", "Users", ":material/group:", "manage_users"),
    ("pages/account.py", "My account", ":material/key:", "view"),
]


def first_admin_screen() -> None:
    st.title("Welcome to Boxwise")
    st.write("No accounts exist yet. Create the admin account to start; "
             "admins add everyone else on the Users page.")
    with st.form("first_admin"):
        username = st.text_input("Admin user name", value="admin")
        password = st.text_input("Password (10 characters or more, not only digits)", type="password")
        repeat = st.text_input("Repeat password", type="password")
        if st.form_submit_button("Create the admin account", type="primary"):
            if password != repeat:
                st.error("The passwords differ.")
            else:
                with common.reported():
                    auth.create_first_admin(common.db(), username, password)
                    _, token = auth.login(common.db(), username, password,
                                          common.client_address())
                    common.remember_login(token)
                    st.rerun()


def login_screen() -> None:
    st.title("Boxwise")
    with st.form("login"):
        username = st.text_input("User name")
        password = st.text_input("Password", type="password")
        if st.form_submit_button("Log in", type="primary"):
            with common.reported():
                _, token = auth.login(common.db(), username, password, common.client_address())
                common.remember_login(token)
                st.rerun()


def _choose_project() -> None:
    picked = [k for k in st.session_state if str(k).startswith("project_picker_")]
    for key in picked:
        if st.session_state[key] != st.session_state.get("project_id"):
            st.session_state["project_id"] = st.session_state[key]


def sidebar(user: dict) -> None:
    with st.sidebar:
        choices = projects.list_projects(common.db())
        if choices:
            ids = [p["id"] for p in choices]
            if st.session_state.get("project_id") not in ids:
                st.session_state["project_id"] = ids[0]
            # The choice lives in "project_id", apart from the widget's own state, so pages can set it.
            st.selectbox("Project", ids, index=ids.index(st.session_state["project_id"]),
                         key=f"project_picker_{st.session_state['project_id']}",
                         format_func=lambda i: next(p["name"] for p in choices if p["id"] == i),
                         on_change=_choose_project)
        st.caption(f"Signed in as **{common.plain(user['username'])}** ({user['role']})")
        if st.button("Log out", key="logout"):
            common.forget_login()
            st.session_state.pop("user", None)
            st.rerun()


def gate(screen, title: str) -> None:
    """Show `screen` (welcome or login) at every page URL: a bookmarked /label opens the login
    form, not Streamlit's "Page not found" dialog."""
    urls = [Path(path).stem for path, *_ in PAGES]
    st.navigation([st.Page(screen, title=title, default=True)] +
                  [st.Page(screen, title=title, url_path=url) for url in urls],
                  position="hidden").run()


@st.cache_resource(show_spinner=False)
def settle_background_work() -> bool:
    """Once per dashboard start: remove what interrupted work left behind, re-attach to runs
    still alive, settle those that ended while the dashboard was down, start queued runs, and
    keep doing so in the background."""
    cleanup.at_start(common.db())
    run_lifecycle.pump_queue(common.db())
    run_lifecycle.start_queue_watcher()
    return True


def main() -> None:
    db = common.db()
    settle_background_work()
    common.write_pending_cookie()
    # st.navigation runs on every path, the gate included: without it Streamlit would fall back
    # to serving pages/ by URL, past the login.
    if not auth.has_users(db):
        gate(first_admin_screen, "Welcome")
        return
    user = common.current_user()
    if user is None:
        gate(login_screen, "Log in")
        return
    st.session_state["user"] = user
    sidebar(user)
    pages = [st.Page(str(HERE / path), title=title, icon=icon) for path, title, icon, action in PAGES
             if auth.can(user, action)]
    st.navigation(pages, expanded=True).run()  # every page in the sidebar, none behind "View more"


main()
