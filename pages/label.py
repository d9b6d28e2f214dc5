"""Label: one image at a time on a canvas — draw, move, resize, relabel and delete boxes, save,
submit, skip; the next image comes from the user's queue and is leased to them."""
from __future__ import annotations

import streamlit as st
from streamlit_drawable_canvas import st_canvas

from backend import annotations, auth, canvas, coordinates, labeling, projects
from backend.errors import Conflict
from pages import common

S = st.session_state
project = common.require_project()
user = common.user()
db = common.db()
labels = projects.list_labels(db, project["id"])
if not labels:
    st.info("This project has no classes yet: add them on the Projects & classes page.")
    st.stop()
label_by_id = {label["id"]: label for label in labels}
if S.get("label_class_id") not in label_by_id:
    S["label_class_id"] = labels[0]["id"]


# ---------------------------------------------------------------- the image being labeled

def work() -> dict | None:
    """The open image: its row, the boxes being edited and whether they differ from SQLite."""
    current = S.get("label_work")
    return current if current and current["project_id"] == project["id"] else None


def open_image(image_id: int) -> None:
    opened = labeling.open_image(db, user, image_id)
    image = opened["image"]
    boxes = annotations.get_boxes(db, image_id)
    previous = work()
    if previous and previous["image"]["id"] != image_id:
        S["label_previous_image"] = previous["image"]
    fit = coordinates.display_fit(image["width"], image["height"])
    S["label_work"] = {"project_id": project["id"], "image": image, "lease": opened["lease"],
                       "mine": opened["mine"], "boxes": boxes, "dirty": False, "rev": 0,
                       "fit": fit, "drawing": canvas.drawing(boxes, labels, fit)}
    S.pop("label_conflict", None)


def replace_boxes(boxes: list[dict]) -> None:
    """A change made outside the canvas (class, delete, copy): redraw the canvas from it."""
    current = work()
    current.update(boxes=boxes, dirty=True, rev=current["rev"] + 1,
                   drawing=canvas.drawing(boxes, labels, current["fit"]))


def save(force: bool = False) -> bool:
    """Save the edited boxes; on a stale version keep them, offer reload or overwrite, and
    stop this run (so a navigation or status change after the save does not happen)."""
    current = work()
    if current is None or not current["dirty"]:
        return True
    try:
        annotations.save_boxes(db, user, current["image"]["id"], current["boxes"],
                               current["image"]["version"], force=force)
    except Conflict as exc:
        S["label_conflict"] = str(exc)
        st.rerun()  # show the conflict (at the top of the page) and stop what was under way
    open_image(current["image"]["id"])
    return True


def leave_for(image_id: int | None) -> None:
    """Save-on-navigate: leaving an image never drops work; a conflict stops the move."""
    current = work()
    if current is not None:
        if not save():
            return
        if current["mine"]:
            labeling.release_lease(db, user, current["image"]["id"])
    if image_id is None:
        S.pop("label_work", None)
        st.toast("Nothing left in your queue with these settings.")
    else:
        open_image(image_id)
    st.rerun()


# ---------------------------------------------------------------- navigation and filters

with st.sidebar.expander("Filters for previous / next", expanded=False):
    people = {u["id"]: u["username"] for u in auth.list_users(db)}
    filters = {
        "status": st.selectbox("Status", [None, *labeling.STATUSES], key="label_f_status",
                               format_func=lambda s: "any" if s is None else s),
        "label_id": st.selectbox("Has a box of class", [None, *label_by_id], key="label_f_class",
                                 format_func=lambda i: "any" if i is None else label_by_id[i]["name"]),
        "labeler_id": st.selectbox("Labeled by", [None, *people], key="label_f_labeler",
                                   format_func=lambda i: "anyone" if i is None else people[i]),
        "assignee_id": st.selectbox("Assigned to", [None, *people], key="label_f_assignee",
                                    format_func=lambda i: "anyone" if i is None else people[i]),
    }
order = st.sidebar.radio("Queue order", labeling.ORDERS, key="label_order", horizontal=True,
                         format_func={"id": "Oldest first", "uncertain": "Most uncertain first"}.get)

current = work()
nav = st.columns([1, 1, 1.6, 1, 0.8])
here = current["image"]["id"] if current else 0
with common.reported():
    if nav[0].button("⟵ Previous", shortcut="Left", disabled=current is None, width="stretch"):
        target = labeling.neighbour(db, project["id"], here, -1, **filters)
        if target:
            leave_for(target["id"])
        st.toast("No earlier image matches the filters.")
    if nav[1].button("Next ⟶", shortcut="Right", width="stretch"):
        target = labeling.neighbour(db, project["id"], here, 1, **filters)
        if target:
            leave_for(target["id"])
        st.toast("No later image matches the filters.")
    if nav[2].button("Next image to label", type="primary", shortcut="N", width="stretch"):
        if save():
            queued = labeling.next_image(db, user, project["id"], order=order,
                                         exclude=[here] if here else [])
            leave_for(queued["id"] if queued else None)
    jump = nav[3].number_input("Image #", min_value=1, step=1, value=None, key="label_jump",
                               label_visibility="collapsed", placeholder="Image #")
    if nav[4].button("Go", disabled=jump is None, width="stretch"):
        leave_for(labeling.project_image(db, project["id"], int(jump))["id"])

current = work()
if current is None:
    st.subheader(common.plain(project["name"]))
    st.write(f"**{labeling.queue_size(db, user, project['id'])}** images in your queue. "
             "Press **Next image to label** (key N) to start; the image is leased to you while "
             "you work on it, so nobody else gets it.")
    st.stop()

image = current["image"]
with common.reported():
    if current["mine"] and not labeling.renew_lease(db, user, image["id"]):
        # The lease ran out while the page was idle and someone else opened the image.
        # Keep the version the user started from, so their save is still checked against it.
        opened = labeling.open_image(db, user, image["id"])
        current.update(lease=opened["lease"], mine=opened["mine"])

# ---------------------------------------------------------------- header: what this image is

st.markdown(f"#### #{image['id']} · {common.plain(image['filename'])} · {image['width']}×{image['height']} px · "
            f"**{image['status'].replace('_', ' ')}** · version {image['version']}")
if current["lease"] and not current["mine"]:
    st.warning(f"This image is {labeling.describe_lease(current['lease'])}. You can look at it; "
               "a save is checked against the version you opened.")
if image["status"] == "rejected" and image["review_comment"]:
    st.error(f"Rejected by the reviewer: {common.plain(image['review_comment'])}")
if image["status"] == "skipped":
    st.info(f"Skipped: {common.plain(image['skip_reason'])}")
if image["no_objects"]:
    st.info("Marked as having no objects (a negative image).")
if current["dirty"]:
    st.caption("● unsaved changes — saved when you move to another image, or press Save (S)")

if S.get("label_conflict"):
    st.error(S["label_conflict"])
    reload_col, overwrite_col = st.columns(2)
    if reload_col.button("Reload (drop my changes)"):
        open_image(image["id"])
        st.rerun()
    if overwrite_col.button("Overwrite with my boxes", type="primary"):
        with common.reported("Overwritten with your boxes"):
            if save(force=True):
                st.rerun()

# ---------------------------------------------------------------- class picker (number keys)

picker = st.container(horizontal=True)
for number, label in enumerate(labels[:9], start=1):
    chosen = S["label_class_id"] == label["id"]
    if picker.button(f"{number} {common.plain(label['name'])}", key=f"label_pick_{label['id']}",
                                 shortcut=str(number), type="primary" if chosen else "secondary"):
        S["label_class_id"] = label["id"]
        st.rerun()
if len(labels) > 9:
    S["label_class_id"] = picker.selectbox(
        "More classes", list(label_by_id), index=list(label_by_id).index(S["label_class_id"]),
        format_func=lambda i: label_by_id[i]["name"], label_visibility="collapsed")
st.html("".join(f"<span style='display:inline-block;margin-right:14px'>"
                f"<span style='display:inline-block;width:12px;height:12px;"
                f"background:{common.html_text(label['color'])};margin-right:4px;vertical-align:middle'>"
                f"</span>{number} {common.html_text(label['name'])}</span>"
                for number, label in enumerate(labels, start=1)))
current_class = label_by_id[S["label_class_id"]]

# ---------------------------------------------------------------- the canvas

show = st.toggle("Show boxes", value=True, key="label_show_boxes")
fit = current["fit"]
background = canvas.display_image(image, fit)
if show:
    result = st_canvas(
        fill_color="rgba(0, 0, 0, 0)", stroke_width=canvas.STROKE_WIDTH,
        stroke_color=current_class["color"], background_image=background,
        background_image_fit="contain", width=fit.canvas_width, height=fit.canvas_height,
        drawing_mode="labeled_rect", label=current_class["name"], font_size=14,
        initial_drawing=current["drawing"], disabled=not auth.can(user, "label"),
        key=f"label_canvas_{image['id']}_{image['version']}_{current['rev']}")
    drawn, problems = canvas.boxes_from_canvas(result.boxes, labels, fit, current["boxes"])
    for problem in problems:
        st.warning(problem)
    if not annotations.same_boxes(drawn, current["boxes"]):
        current.update(boxes=drawn, dirty=True)
        st.rerun()
else:
    st.image(background, width=fit.canvas_width)
st.caption(f"Draw with the mouse in the class **{common.plain(current_class['name'])}**. The toolbar's Edit "
           "toggle moves, resizes and deletes boxes (click a selected box again to relabel it). "
           "Dashed boxes are model drafts with their score.")

# ---------------------------------------------------------------- save, submit, skip

actions = st.columns([1, 1.3, 1, 1.6, 1])
with common.reported():
    if actions[0].button("Save", shortcut="S", type="primary", disabled=not current["dirty"],
                         width="stretch"):
        if save():
            st.toast("Saved")
            st.rerun()
    if actions[1].button("Submit as labeled", width="stretch"):
        labeling.submit(db, user, image["id"], current["boxes"], image["version"])
        open_image(image["id"])
        st.rerun()
    if actions[2].button("No objects", help="A negative image: exported with zero boxes",
                         width="stretch"):
        if save():
            labeling.mark_no_objects(db, user, image["id"], work()["image"]["version"])
            open_image(image["id"])
            st.rerun()
    reason = actions[3].text_input("Skip reason", key=f"label_skip_{image['id']}",
                                   placeholder="Skip reason", label_visibility="collapsed")
    if actions[4].button("Skip", width="stretch"):
        if save():
            labeling.skip(db, user, image["id"], work()["image"]["version"], reason)
            open_image(image["id"])
            st.rerun()

# ---------------------------------------------------------------- the box list and box editor

boxes = current["boxes"]
left, right = st.columns([3, 2])
with left:
    st.markdown(f"**Boxes** ({len(boxes)}, in image pixels)")
    if boxes:
        st.dataframe(annotations.box_table(boxes, labels), hide_index=True, width="stretch")
with right:
    if boxes:
        number = st.selectbox("Box", list(range(1, len(boxes) + 1)), key="label_box_number")
        chosen = boxes[number - 1]
        new_class = st.selectbox("Class of this box", list(label_by_id),
                                 index=list(label_by_id).index(chosen["label_id"]),
                                 format_func=lambda i: label_by_id[i]["name"],
                                 key=f"label_box_class_{image['id']}_{current['rev']}_{number}")
        if new_class != chosen["label_id"]:
            replace_boxes(annotations.edit_box(boxes, number - 1, label_id=new_class))
            st.rerun()
        flags = st.columns(2)
        version_key = f"{image['id']}_{current['rev']}_{number}"
        difficult = flags[0].checkbox("Difficult", value=bool(chosen.get("difficult")),
                                      key=f"label_box_difficult_{version_key}",
                                      help="Pascal VOC's flag: hard to recognise; evaluations may ignore it")
        truncated = flags[1].checkbox("Truncated", value=bool(chosen.get("truncated")),
                                      key=f"label_box_truncated_{version_key}",
                                      help="Pascal VOC's flag: the object extends beyond the box or image")
        if difficult != bool(chosen.get("difficult")) or truncated != bool(chosen.get("truncated")):
            replace_boxes(annotations.edit_box(boxes, number - 1, difficult=difficult, truncated=truncated))
            st.rerun()
        edit = st.columns(2)
        if edit[0].button("Delete this box", width="stretch"):
            replace_boxes(annotations.edit_box(boxes, number - 1, delete=True))
            st.rerun()
        if chosen.get("source") == "model" and edit[1].button("Accept this draft", width="stretch"):
            replace_boxes(annotations.edit_box(boxes, number - 1, accept=True))
            st.rerun()
    drafts = annotations.draft_count(boxes)
    with common.reported():
        if drafts:
            st.caption(f"{drafts} model drafts (dashed)")
            draft_cols = st.columns(2)
            if draft_cols[0].button("Accept all drafts", width="stretch") and save():
                annotations.accept_drafts(db, user, image["id"], None, work()["image"]["version"])
                open_image(image["id"])
                st.rerun()
            if draft_cols[1].button("Delete all drafts", width="stretch") and save():
                annotations.reject_drafts(db, user, image["id"], None, work()["image"]["version"])
                open_image(image["id"])
                st.rerun()
        previous = S.get("label_previous_image")
        if previous and previous["project_id"] == project["id"] and \
                st.button(f"Copy boxes from previous image (#{previous['id']})"):
            copied = annotations.scaled_copy(annotations.get_boxes(db, previous["id"], source="human"),
                                             previous, image)
            replace_boxes(boxes + copied)
            st.rerun()

with st.expander("History of this image"):
    st.dataframe(annotations.history_table(db, image["id"]), hide_index=True, width="stretch")
