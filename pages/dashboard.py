"""Progress: where the project stands — statuses, who labels how much, class balance, boxes
per image, review outcomes — and, for admins, assignments and leases."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from backend import auth, dashboard, labeling
from pages import common

project = common.require_project()
user = common.user()
db = common.db()

st.subheader(f"Progress · {common.plain(project['name'])}")
summary = dashboard.summary(db, project["id"])
review = dashboard.review_summary(db, project["id"])
metrics = st.columns(5)
metrics[0].metric("Images", summary["images"])
metrics[1].metric("Done (labeled or reviewed)",
                  f"{summary['done_share']:.0%}" if summary["done_share"] is not None else "—")
metrics[2].metric("Boxes", summary["boxes"])
metrics[3].metric("Open model drafts", summary["drafts"])
metrics[4].metric("Review rejection rate",
                  f"{review['rejection_rate']:.0%}" if review["rejection_rate"] is not None else "—")

left, right = st.columns(2)
with left:
    st.markdown("**Images by status**")
    statuses = pd.DataFrame(list(dashboard.counts_by_status(db, project["id"]).items()),
                            columns=["status", "images"])
    st.altair_chart(alt.Chart(statuses).mark_bar().encode(
        x=alt.X("status", sort=list(labeling.STATUSES), title=None), y="images",
        tooltip=["status", "images"]), width="stretch")
with right:
    st.markdown("**Class balance** (human boxes)")
    balance = pd.DataFrame(dashboard.class_balance(db, project["id"]))
    if not balance.empty:
        st.altair_chart(alt.Chart(balance).mark_bar().encode(
            x=alt.X("class", sort=None, title=None), y="boxes",
            color=alt.Color("class", scale=alt.Scale(domain=list(balance["class"]),
                                                     range=list(balance["color"])), legend=None),
            tooltip=["class", "boxes", "images"]), width="stretch")

left, right = st.columns(2)
with left:
    days = st.select_slider("Throughput over the last", [7, 14, 30, 90], value=30,
                            format_func=lambda d: f"{d} days")
    speed = pd.DataFrame(dashboard.throughput(db, project["id"], days=days))
    if speed.empty:
        st.caption("Nobody has labeled anything in that time.")
    else:
        for measure in ("images", "boxes"):
            st.markdown(f"**{measure.capitalize()} per labeler and day**")
            st.altair_chart(alt.Chart(speed).mark_bar().encode(
                x=alt.X("day:O", title=None), y=alt.Y(f"{measure}:Q", title=measure),
                color=alt.Color("username", title="labeler"), xOffset="username",
                tooltip=["day", "username", measure]), width="stretch")
with right:
    st.markdown("**Boxes per image** (labeled and reviewed images)")
    histogram = pd.DataFrame(dashboard.boxes_per_image(db, project["id"]))
    if not histogram.empty:
        st.altair_chart(alt.Chart(histogram).mark_bar().encode(
            x=alt.X("boxes:O", title="boxes on the image"), y=alt.Y("images:Q"),
            tooltip=["boxes", "images"]), width="stretch")
    st.markdown("**Review outcomes by labeler**")
    if review["per_labeler"]:
        st.dataframe(pd.DataFrame(review["per_labeler"]), hide_index=True, width="stretch",
                     column_config={"rejection_rate": st.column_config.NumberColumn(
                         "rejection rate", format="percent")})
    else:
        st.caption("Nothing reviewed yet.")

st.markdown("**Leases held now**")
held = labeling.leases(db, project["id"])
if held:
    st.dataframe(pd.DataFrame(held).drop(columns="lease_expires_at"), hide_index=True,
                 width="stretch")
else:
    st.caption("No image is leased right now.")

if auth.can(user, "assign"):
    st.markdown("**Assign work** (admins)")
    labelers = {u["id"]: u["username"] for u in labeling.labelers(db)}
    with st.form("assign"):
        who = st.selectbox("Labeler", list(labelers), format_func=labelers.get)
        ids = st.text_input("Image ids", placeholder="e.g. 1-50, 60")
        count = st.number_input("…or the next N unassigned new images", min_value=0, value=0)
        if st.form_submit_button("Assign"):
            with common.reported():
                if ids.strip():
                    done = labeling.assign(db, user, project["id"], labeling.parse_id_ranges(ids), who)
                else:
                    done = len(labeling.assign_next(db, user, project["id"], who, count))
                st.success(f"Assigned {done} images to {common.plain(labelers[who])}.")
    if held and st.button("Release all leases"):
        with common.reported():
            released = labeling.release_leases(db, user, project["id"])
            st.success(f"Released {released} leases.")
