"""Projects & classes: create, rename, archive projects; add, rename, recolor, reorder, merge classes."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from backend import auth, projects
from pages import common

user = common.user()
db = common.db()
can_edit = auth.can(user, "manage_projects")
st.title("Projects & classes")

with st.expander("New project", expanded=not projects.list_projects(db, include_archived=True)):
    with st.form("new_project", clear_on_submit=True):
        name = st.text_input("Name")
        classes = st.text_input("Classes, comma-separated", placeholder="cat, dog, bird")
        description = st.text_area("Description", height=68)
        if st.form_submit_button("Create project", type="primary", disabled=not can_edit):
            with common.reported("Project created"):
                made = projects.create_project(db, user, name,
                                               [c.strip() for c in classes.split(",") if c.strip()],
                                               description)
                st.session_state["project_id"] = made["id"]
                st.rerun()

all_projects = projects.list_projects(db, include_archived=True)
if all_projects:
    st.dataframe(pd.DataFrame(all_projects)[["id", "name", "image_count", "class_count", "archived"]],
                 hide_index=True, width="stretch")

project = common.require_project()
st.header(common.plain(project["name"]))
left, right = st.columns(2)
with left:
    with st.form("rename_project"):
        new_name = st.text_input("Rename project", value=project["name"])
        if st.form_submit_button("Rename", disabled=not can_edit):
            with common.reported("Renamed"):
                projects.rename_project(db, user, project["id"], new_name)
                st.rerun()
with right:
    label = "Unarchive project" if project["archived"] else "Archive project"
    st.write("Archived projects leave the project picker; nothing is deleted.")
    if st.button(label, disabled=not can_edit):
        with common.reported(f"{label} done"):
            projects.set_archived(db, user, project["id"], not project["archived"])
            st.rerun()

st.subheader("Classes")
st.caption("Each class keeps its label-map id forever: renaming keeps it, and ids of deleted "
           "classes are never given again. The order sets the number keys on the Label page.")
labels = projects.list_labels(db, project["id"])
if labels:
    st.dataframe(pd.DataFrame(labels)[["position", "label_map_id", "name", "display_name", "color",
                                       "box_count"]],
                 hide_index=True, width="stretch",
                 column_config={"position": st.column_config.NumberColumn("key", format="%d")})

with st.form("add_class", clear_on_submit=True):
    cols = st.columns([3, 1, 1])
    new_class = cols[0].text_input("New class name")
    color = cols[1].color_picker("Colour", value=projects.PALETTE[len(labels) % len(projects.PALETTE)])
    if cols[2].form_submit_button("Add class", disabled=not can_edit):
        with common.reported("Class added"):
            projects.add_label(db, user, project["id"], new_class, color)
            st.rerun()

if labels and can_edit:
    by_id = {row["id"]: row for row in labels}
    chosen = st.selectbox("Edit class", list(by_id), format_func=lambda i: f"{by_id[i]['name']} "
                          f"(id {by_id[i]['label_map_id']}, {by_id[i]['box_count']} boxes)")
    label = by_id[chosen]
    cols = st.columns(4)
    with cols[0].form("rename_class"):
        renamed = st.text_input("Name", value=label["name"])
        display = st.text_input("Display name", value=label["display_name"] or label["name"])
        if st.form_submit_button("Rename"):
            with common.reported("Class renamed"):
                projects.rename_label(db, user, chosen, renamed, display)
                st.rerun()
    with cols[1].form("recolor_class"):
        new_color = st.color_picker("Colour", value=label["color"])
        if st.form_submit_button("Recolour"):
            with common.reported("Colour changed"):
                projects.recolor_label(db, user, chosen, new_color)
                st.rerun()
    with cols[2].form("move_class"):
        st.write(f"Position {label['position'] + 1} of {len(labels)}")
        up, down = st.columns(2)
        order = [row["id"] for row in labels]
        index = order.index(chosen)
        if up.form_submit_button("Up", disabled=index == 0):
            order[index - 1], order[index] = order[index], order[index - 1]
            with common.reported():
                projects.reorder_labels(db, user, project["id"], order)
                st.rerun()
        if down.form_submit_button("Down", disabled=index == len(order) - 1):
            order[index + 1], order[index] = order[index], order[index + 1]
            with common.reported():
                projects.reorder_labels(db, user, project["id"], order)
                st.rerun()
    with cols[3].form("delete_class"):
        others = [i for i in by_id if i != chosen]
        merge = st.selectbox("Merge its boxes into", [None] + others,
                             format_func=lambda i: "— (no boxes to merge)" if i is None else by_id[i]["name"])
        if st.form_submit_button("Delete class"):
            with common.reported("Class deleted"):
                projects.delete_label(db, user, chosen, merge)
                st.rerun()
