"""My account: change my password, log out."""
from __future__ import annotations

import streamlit as st

from backend import auth
from pages import common

user = common.user()
st.title("My account")
st.write(f"**{common.plain(user['username'])}** · role **{user['role']}**")
with st.form("change_password", clear_on_submit=True):
    current = st.text_input("Current password", type="password")
    new = st.text_input("New password", type="password")
    repeat = st.text_input("Repeat new password", type="password")
    if st.form_submit_button("Change password"):
        if new != repeat:
            st.error("The passwords differ.")
        else:
            with common.reported():
                auth.change_password(common.db(), user, current, new)
                st.success("Password changed. Log in again with the new one.")
                common.forget_login()
if st.button("Log out", type="primary"):
    common.forget_login()
    st.session_state.pop("user", None)
    st.rerun()
