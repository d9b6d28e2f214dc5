"""Review: submitted images one by one — approve, or reject with a comment that sends the
image back to its labeler."""
from __future__ import annotations

import streamlit as st
from streamlit_drawable_canvas import st_canvas

from backend import annotations, auth, canvas, coordinates, dashboard, labeling, projects
from backend.errors import NotFound
from pages import common

S = st.session_state
project = common.require_project()
user = common.user()
db = common.db()
labels = projects.list_labels(db, project["id"])

waiting = dashboard.counts_by_status(db, project["id"])["labeled"]
st.subheader(f"Review · {common.plain(project['name'])}")
st.caption(f"{waiting} submitted images wait for review. Approve (A) or reject with a comment; "
           "a rejected image goes back to the labeler's queue.")


def next_image(exclude: list[int]) -> None:
    with common.reported():
        found = labeling.next_for_review(db, user, project["id"], exclude=exclude)
        S["review_image_id"] = found["id"] if found else None
        # Shown until the next press: why nothing came ("1 image waits, leased by ann until 10:42").
        S["review_empty"] = None if found else \
            labeling.why_queue_is_empty(db, user, project["id"], review=True, exclude=exclude)


image_id = S.get("review_image_id")
if st.button("Next image to review", type="primary", shortcut="N"):
    next_image([image_id] if image_id else [])
    st.rerun()

if S.get("review_empty"):
    st.info(common.plain(S["review_empty"]))  # it names who holds a lease
if not image_id:
    st.stop()
try:
    image = labeling.project_image(db, project["id"], image_id)
except NotFound:  # the project was switched in the sidebar
    S.pop("review_image_id", None)
    st.rerun()

labeler = auth.get_user(db, image["labeled_by"])["username"] if image["labeled_by"] else "nobody"
st.markdown(f"#### #{image['id']} · {common.plain(image['filename'])} · {image['width']}×{image['height']} px · "
            f"**{image['status']}** · labeled by {common.plain(labeler)} · version {image['version']}")
if image["no_objects"]:
    st.info("Submitted as having no objects (a negative image).")

boxes = annotations.get_boxes(db, image["id"])
fit = coordinates.display_fit(image["width"], image["height"])
st_canvas(background_image=canvas.display_image(image, fit), background_image_fit="contain",
          width=fit.canvas_width, height=fit.canvas_height, drawing_mode="rect",
          fill_color="rgba(0, 0, 0, 0)", initial_drawing=canvas.drawing(boxes, labels, fit),
          disabled=True, key=f"review_canvas_{image['id']}_{image['version']}")

left, right = st.columns([3, 2])
with left:
    st.markdown(f"**Boxes** ({len(boxes)}, in image pixels)")
    if boxes:
        st.dataframe(annotations.box_table(boxes, labels), hide_index=True, width="stretch")
with right:
    reviewable = image["status"] in ("labeled", "reviewed")
    if st.button("Approve", shortcut="A", type="primary", disabled=not reviewable, width="stretch"):
        with common.reported("Approved"):
            labeling.approve(db, user, image["id"], image["version"])
            next_image([image["id"]])
            st.rerun()
    comment = st.text_area("Comment for the labeler (needed to reject)", key=f"review_comment_{image['id']}")
    if st.button("Reject and send back", disabled=not reviewable, width="stretch"):
        with common.reported("Sent back to the labeler"):
            labeling.reject(db, user, image["id"], image["version"], comment)
            next_image([image["id"]])
            st.rerun()

with st.expander("History of this image"):
    st.dataframe(annotations.history_table(db, image["id"]), hide_index=True, width="stretch")
