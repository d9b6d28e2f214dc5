"""Users (admins only): add accounts with roles, disable them, reset passwords."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from backend import auth
from pages import common

user = common.user()
db = common.db()
st.title("Users")
st.caption("admin: everything · reviewer: review, upload, export, train · labeler: draw boxes · "
           "viewer: look only. Rights are checked by the backend on every change.")

with st.form("add_user", clear_on_submit=True):
    cols = st.columns(3)
    username = cols[0].text_input("User name")
    role = cols[1].selectbox("Role", auth.ROLES, index=2)
    password = cols[2].text_input("Initial password", type="password")
    if st.form_submit_button("Add user", type="primary"):
        with common.reported("User added"):
            auth.add_user(db, user, username, password, role)
            st.rerun()

everyone = auth.list_users(db)
st.dataframe(pd.DataFrame(everyone)[["id", "username", "role", "disabled"]], hide_index=True,
             width="stretch")

by_id = {row["id"]: row for row in everyone}
chosen = st.selectbox("Manage user", list(by_id), format_func=lambda i: by_id[i]["username"])
target = by_id[chosen]
cols = st.columns(3)
with cols[0].form("role"):
    new_role = st.selectbox("Role", auth.ROLES, index=auth.ROLES.index(target["role"]))
    if st.form_submit_button("Change role"):
        with common.reported("Role changed"):
            auth.set_role(db, user, chosen, new_role)
            st.rerun()
with cols[1].form("disable"):
    st.write("Disabled" if target["disabled"] else "Active")
    if st.form_submit_button("Enable" if target["disabled"] else "Disable"):
        with common.reported("Saved"):
            auth.set_disabled(db, user, chosen, not target["disabled"])
            st.rerun()
with cols[2].form("reset", clear_on_submit=True):
    new_password = st.text_input("New password", type="password")
    if st.form_submit_button("Reset password"):
        with common.reported("Password reset; the user's sessions were ended"):
            auth.reset_password(db, user, chosen, new_password)
