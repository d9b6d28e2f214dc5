"""Home: what is in the chosen project, and a one-click demo for an empty Boxwise."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from backend import auth, demo, images, projects
from pages import common

user = common.user()
st.title("Boxwise")
st.caption("Label images, export TF OD API datasets, train and try object detectors — as a team.")

if not projects.list_projects(common.db(), include_archived=True):
    st.subheader("No projects yet")
    st.write("Create a project on **Projects & classes**, or start with the demo: "
             f"a project named `{demo.DEMO_PROJECT}` with {demo.DEMO_IMAGES} {demo.DESCRIPTION}.")
    if auth.can(user, "manage_projects"):
        if st.button("Create the demo project", type="primary"):
            bar = st.progress(0.0, text="Generating images…")
            with common.reported("Demo project created"):
                made = demo.create_demo_project(
                    common.db(), user,
                    on_progress=lambda done, total, name: bar.progress(done / total, text=f"Stored {name}"))
                st.session_state["project_id"] = made["id"]
                st.rerun()
    else:
        st.info("Ask an admin to create a project.")
    st.stop()

project = common.require_project()
st.header(common.plain(project["name"]))
if project["description"]:
    st.write(common.plain(project["description"]))  # plain text, as typed
summary = images.stats(common.db(), project["id"])
cols = st.columns(3)
cols[0].metric("Images", summary["images"])
cols[1].metric("Boxes", summary["boxes"])
cols[2].metric("Classes", len(summary["boxes_per_class"]))
left, right = st.columns(2)
with left:
    st.subheader("Images by status")
    if summary["by_status"]:
        st.bar_chart(pd.Series(summary["by_status"], name="images"), horizontal=True)
    else:
        st.write("No images yet — add some on **Upload**.")
with right:
    st.subheader("Boxes per class")
    if summary["boxes_per_class"]:
        st.bar_chart(pd.Series(summary["boxes_per_class"], name="boxes"), horizontal=True)
