"""Label: one image at a time on a canvas — draw, move, resize, relabel and delete boxes, save,
submit, skip; the next image comes from the user's queue and is leased to them."""
from __future__ import annotations

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit_drawable_canvas import st_canvas

from backend import annotations, auth, canvas, coordinates, labeling, projects
from backend.errors import BoxwiseError, Conflict
from pages import common
from pages.canvas_bridge import canvas_bridge

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
# Edits live in the session (`label_work`) until Save or leaving the image. Every action is a
# button callback: Streamlit runs callbacks before the script, so a click followed at once by
# another (Submit then N) is never lost to the rerun the second click interrupts.

def work() -> dict | None:
    """The open image: its row, the boxes being edited and whether they differ from SQLite."""
    current = S.get("label_work")
    return current if current and current["project_id"] == project["id"] else None


def notice(kind: str, text: str) -> None:
    """A message for the next run of the page (callbacks cannot draw)."""
    S.setdefault("label_notices", []).append((kind, text))


def open_image(image_id: int) -> None:
    opened = labeling.open_image(db, user, image_id)
    image = opened["image"]
    boxes = annotations.get_boxes(db, image_id)
    previous = work()
    if previous and previous["image"]["id"] != image_id:
        S["label_previous_image"] = previous["image"]
    keep_view = previous and previous["image"]["id"] == image_id
    S["label_work"] = {"project_id": project["id"], "image": image, "lease": opened["lease"],
                       "mine": opened["mine"], "boxes": boxes, "dirty": False, "rev": 0,
                       "fit": coordinates.display_fit(image["width"], image["height"]),
                       "view": previous["view"] if keep_view else None,
                       "undo": [], "redo": [], "selected": None, "highlight": None,
                       "mounted": None}
    S.pop("label_conflict", None)


def view_fit(current: dict) -> coordinates.DisplayFit:
    """The canvas's view of the open image: the whole image, or the zoomed region."""
    view = current.get("view")
    if not view:
        return current["fit"]
    return coordinates.zoomed(current["fit"], view["zoom"], view["cx"], view["cy"])


def set_view(current: dict, fit: coordinates.DisplayFit) -> None:
    center_x, center_y = coordinates.view_center(fit)
    current["view"] = None if fit.zoom == 1 else {"zoom": fit.zoom, "cx": center_x, "cy": center_y}


def replace_boxes(boxes: list[dict], *, record: bool = True) -> None:
    """A change made outside the canvas (delete, class, undo): redraw the canvas from it."""
    current = work()
    if record:
        current["undo"].append(current["boxes"])
        current["redo"] = []
    # The canvas on screen is out of date: what it still holds must not be folded back in.
    current.update(boxes=boxes, dirty=True, rev=current["rev"] + 1, mounted=None)
    if current["selected"] is not None and current["selected"] >= len(boxes):
        current["selected"] = current["highlight"] = None


def absorb_canvas(json_data: dict | None = None) -> list[str]:
    """Fold what the canvas last sent into the edited boxes (also before any action, so a box
    drawn just before N or Save is part of what is saved). Returns problems to show."""
    current = work()
    mounted = current and current.get("mounted")
    if not mounted:
        return []
    if json_data is None:
        state = S.get(mounted["key"])
        json_data = ((state or {}).get("drawing") or {}).get("raw") if isinstance(state, dict) else None
        if json_data is None:
            return []
    if mounted.get("absorbed") == json_data:
        # Already folded in (the page reads the canvas twice a run, and a run caused by a
        # button elsewhere gets the same drawing again): 280 boxes cost ~5 ms to read back.
        return mounted["absorbed_problems"]
    fit, base = mounted["fit"], mounted["boxes"]
    shown = [base[i] for i in mounted["shown"]]
    edited, problems = canvas.boxes_from_canvas(canvas.canvas_shapes(json_data), labels, fit, shown,
                                                current_label_id=S["label_class_id"])
    merged, mounted["on_canvas"] = canvas.merge_view(base, mounted["shown"], edited)
    if not annotations.same_boxes(merged, current["boxes"]):
        current["undo"].append(current["boxes"])
        current["redo"] = []
        current.update(boxes=merged, dirty=True)
    mounted.update(absorbed=json_data, absorbed_problems=problems)
    return problems


def save(force: bool = False) -> bool:
    """Save the edited boxes; on a stale version keep them and offer reload or overwrite
    (False: the caller stops what it was doing, so nothing moves on past a conflict)."""
    absorb_canvas()
    current = work()
    if current is None or not current["dirty"]:
        return True
    try:
        annotations.save_boxes(db, user, current["image"]["id"], current["boxes"],
                               current["image"]["version"], force=force)
    except Conflict as exc:
        S["label_conflict"] = str(exc)
        return False
    reopen(current["image"]["id"])
    return True


def reopen(image_id: int) -> None:
    """Reload the image from SQLite, keeping the view."""
    open_image(image_id)


def leave_for(image_id: int | None, empty_message: str | None = None) -> None:
    """Save-on-navigate: leaving an image never drops work; a conflict stops the move."""
    current = work()
    if current is not None:
        if not save():
            return
        if current["mine"]:
            try:
                labeling.release_lease(db, user, current["image"]["id"])
            except PermissionError:
                pass  # the lease ran out and someone else holds it now: nothing to give up
    if image_id is None:
        S.pop("label_work", None)
        notice("info", common.plain(empty_message) if empty_message else
               "Nothing left in your queue with these settings.")  # (it names who holds a lease)
    else:
        open_image(image_id)


def action(function):
    """A button callback that reports domain errors and refusals on the page."""
    def run(*args):
        try:
            function(*args)
        except PermissionError as exc:
            notice("error", f"Not allowed: {common.plain(common.shown_in(str(exc)))}")
        except BoxwiseError as exc:  # (it may quote file, class and user names)
            notice("error", common.plain(common.shown_in(str(exc))))
    return run


@action
def go_next() -> None:
    current = work()
    here = current["image"]["id"] if current else None
    if not save():
        return
    # Images passed over in this session are left out, so N goes through the whole queue
    # instead of bouncing between two; when only those are left, it starts over.
    passed = S.setdefault("label_passed", [])
    if here and here not in passed:
        passed.append(here)
    order = S.get("label_order", "id")
    resume = bool(S.get("label_resume_own"))
    queued = labeling.next_image(db, user, project["id"], order=order, exclude=passed,
                                 resume_own=resume)
    if queued is None and len(passed) > 1:
        passed[:] = [here] if here else []
        queued = labeling.next_image(db, user, project["id"], order=order, exclude=passed,
                                     resume_own=resume)
    leave_for(queued["id"] if queued else None,
              labeling.why_queue_is_empty(db, user, project["id"], exclude=[here] if here else []))


@action
def go_neighbour(step: int) -> None:
    current = work()
    target = labeling.neighbour(db, project["id"], current["image"]["id"] if current else 0, step,
                                **filters)
    if target:
        leave_for(target["id"])
    else:
        notice("info", f"No {'later' if step > 0 else 'earlier'} image matches the filters.")


@action
def go_to() -> None:
    number = S.get("label_jump")
    if number is None:
        notice("info", "Type an image number first.")
        return
    leave_for(labeling.project_image(db, project["id"], int(number))["id"])


@action
def do_save() -> None:
    current = work()
    absorb_canvas()
    if not current["dirty"]:
        notice("toast", "Nothing to save")
    elif save():
        notice("toast", "Saved")


@action
def do_submit() -> None:
    absorb_canvas()
    current = work()
    labeling.submit(db, user, current["image"]["id"], current["boxes"], current["image"]["version"])
    reopen(current["image"]["id"])
    notice("toast", "Submitted as labeled")


@action
def do_no_objects() -> None:
    current = work()
    if save():
        labeling.mark_no_objects(db, user, current["image"]["id"], work()["image"]["version"])
        reopen(current["image"]["id"])


@action
def do_skip() -> None:
    current = work()
    here = current["image"]["id"]
    reason = S.get(f"label_skip_{here}", "")
    if not (reason or "").strip():
        notice("error", "Say why the image is skipped (the box beside Skip), then press Skip.")
        return
    if save():
        labeling.skip(db, user, here, work()["image"]["version"], reason)
        notice("toast", f"Skipped #{here}")
        go_next()


@action
def do_accept_drafts() -> None:
    current = work()
    if save():
        annotations.accept_drafts(db, user, current["image"]["id"], None, work()["image"]["version"])
        reopen(current["image"]["id"])


@action
def do_reject_drafts() -> None:
    current = work()
    if save():
        annotations.reject_drafts(db, user, current["image"]["id"], None, work()["image"]["version"])
        reopen(current["image"]["id"])


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
st.sidebar.radio("Queue order", labeling.ORDERS, key="label_order", horizontal=True,
                 format_func={"id": "Oldest first", "uncertain": "Most uncertain first"}.get)
st.sidebar.checkbox("My unfinished images first", key="label_resume_own",
                    help="Images you saved without submitting come before new ones (otherwise after)")

current = work()
nav = st.columns([1, 1, 1.6, 1, 0.8])
nav[0].button("⟵ Previous", shortcut="PageUp", disabled=current is None, width="stretch",
              on_click=go_neighbour, args=(-1,))
nav[1].button("Next ⟶", shortcut="PageDown", width="stretch", on_click=go_neighbour, args=(1,))
nav[2].button("Next image to label", type="primary", shortcut="N", width="stretch",
              on_click=go_next)
nav[3].number_input("Image #", min_value=1, step=1, value=None, key="label_jump",
                    label_visibility="collapsed", placeholder="Image #")
nav[4].button("Go", width="stretch", on_click=go_to)

for kind, text in S.pop("label_notices", []):
    {"toast": st.toast, "info": st.info, "error": st.error}[kind](text)

current = work()
if current is None:
    st.subheader(common.plain(project["name"]))
    st.write(f"**{labeling.queue_size(db, user, project['id'])}** images in your queue. "
             "Press **Next image to label** (key N) to start; the image is leased to you while "
             "you work on it, so nobody else gets it.")
    st.stop()

image = current["image"]
with common.reported():  # a busy database is a message (retry), never a Traceback
    if current["mine"] and not labeling.renew_lease(db, user, image["id"]):
        # The lease ran out while the page was idle and someone else opened the image.
        # Keep the version the user started from, so their save is still checked against it.
        opened = labeling.open_image(db, user, image["id"])
        current.update(lease=opened["lease"], mine=opened["mine"])

# ---------------------------------------------------------------- header: what this image is
S["label_page_shows"] = (image["id"], image["version"], image["status"])

st.markdown(f"#### #{image['id']} · {common.plain(image['filename'])} · {image['width']}×{image['height']} px · "
            f"**{image['status'].replace('_', ' ')}** · version {image['version']}")
if current["lease"] and not current["mine"]:
    st.warning(f"This image is {common.plain(labeling.describe_lease(current['lease']))}. You can look at it; "
               "a save is checked against the version you opened.")
if image["status"] == "rejected" and image["review_comment"]:
    st.error(f"Rejected by the reviewer: {common.plain(image['review_comment'])}")
if image["status"] == "skipped":
    st.info(f"Skipped: {common.plain(image['skip_reason'])}")
if image["no_objects"]:
    st.info("Marked as having no objects (a negative image).")

if S.get("label_conflict"):
    st.error(common.plain(S["label_conflict"]))  # it names who changed the image
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
current_class = label_by_id[S["label_class_id"]]

# ---------------------------------------------------------------- the canvas and its boxes
# One fragment: drawing, zooming, selecting and editing boxes rerun only this part of the page.


@st.fragment
def canvas_and_boxes() -> None:
    current = work()
    image = current["image"] if current else None
    if image is None or S.get("label_page_shows") != (image["id"], image["version"], image["status"]):
        # The image changed in a run this fragment-only run interrupted (N pressed while the
        # canvas was sending): draw the whole page again so the header says what is open.
        st.rerun(scope="app")
    problems = absorb_canvas()

    def redraw() -> None:
        """Run this part again (the whole page when the fragment runs within the page's run)."""
        context = get_script_run_ctx()
        st.rerun(scope="fragment" if context and context.fragment_ids_this_run else "app")

    # View controls: zoom, tags, hidden classes, boxes on/off.
    tools = st.container(horizontal=True, vertical_alignment="center")
    fit = view_fit(current)
    zoom_in = tools.button("Zoom in", icon=":material/zoom_in:",
                           help="Zoom in (+ key, or the mouse wheel over the image)",
                           key="label_zoom_in", disabled=fit.zoom >= coordinates.ZOOMS[-1])
    zoom_out = tools.button("Zoom out", icon=":material/zoom_out:",
                            help="Zoom out (- key, or the mouse wheel)", key="label_zoom_out",
                            disabled=fit.zoom <= 1)
    whole = tools.button("1×", help="The whole image", key="label_zoom_whole", disabled=fit.zoom <= 1)
    tools.markdown(f"**{fit.zoom:g}×**")
    show = tools.toggle("Show boxes (H)", key="label_show_boxes", value=True)
    # Chips on a dense image cover it: off by default when the first image opened has > 100 boxes.
    # The choice is kept under a key of the page's own (`label_tags_on`): a widget's own state
    # is dropped after a run that does not draw it (a page without an image open) but read for
    # one more run, so the toggle flipped one run after N, which changed the canvas's key and
    # replaced the canvas under a box being drawn (the bench's lost first drag on a project).
    S.setdefault("label_tags_on", len(current["boxes"]) <= 100)
    S["label_tags"] = S["label_tags_on"]
    tags = tools.toggle("Tags", key="label_tags", help="Class names on the boxes, sized to the zoom",
                        on_change=lambda: S.update(label_tags_on=S["label_tags"]))
    hidden_names = tools.multiselect("Hide classes", [label["name"] for label in labels], key="label_hidden",
                                     placeholder="Hide classes", label_visibility="collapsed")
    toggle_boxes = tools.button("H", key="label_toggle_boxes", shortcut="H",
                                help="Show or hide all boxes (drawing goes on)")
    if toggle_boxes:
        S["label_show_boxes"] = not show
        redraw()
    steps = 1 if zoom_in else -1 if zoom_out else 0
    if steps:
        set_view(current, coordinates.zoomed(current["fit"], coordinates.step_zoom(fit.zoom, steps),
                                             *coordinates.view_center(fit)))
        redraw()
    if whole:
        current["view"] = None
        redraw()

    hidden = {label["id"] for label in labels if label["name"] in hidden_names}
    if not show:
        hidden = set(label_by_id)
    boxes = current["boxes"]
    shown = canvas.shown_boxes(boxes, fit, hidden)
    font = canvas.tag_font_size(fit.zoom) if tags else None
    # The box picked in the list or with Tab is drawn thicker; one picked on the canvas is
    # already shown selected there, and redrawing would drop the canvas's own selection.
    highlight = current.get("highlight")
    key = (f"label_canvas_{image['id']}_{image['version']}_{current['rev']}_{fit.zoom:g}_"
           f"{fit.left:.2f}_{fit.top:.2f}_{sorted(hidden)}_{font}_{highlight}")
    mounted = current.get("mounted")
    if not mounted or mounted["key"] != key:
        # A new canvas: what it shows is fixed until the key changes, so boxes drawn on it come
        # back relative to this base (`absorb_canvas`) and the drawing is not sent again.
        shown = canvas.shown_boxes(boxes, fit, hidden)
        emphasis = shown.index(highlight) if highlight in shown else None
        drawing = canvas.drawing([boxes[i] for i in shown], labels, fit, font_size=font,
                                 selected=emphasis)
        mounted = current["mounted"] = {"key": key, "fit": fit, "boxes": boxes, "shown": shown,
                                        "drawing": drawing, "on_canvas": shown,
                                        "background": canvas.display_data_url(image, fit),
                                        "overview": canvas.overview_image(image, fit)}
    shown, drawing = mounted["shown"], mounted["drawing"]

    area, side = st.columns([fit.canvas_width, 220])
    with area:
        result = st_canvas(
            fill_color="rgba(0, 0, 0, 0)", stroke_width=canvas.STROKE_WIDTH,
            stroke_color=current_class["color"],
            background_image=mounted["background"],
            background_image_fit="contain", width=fit.canvas_width, height=fit.canvas_height,
            drawing_mode="labeled_rect", label=current_class["name"] if tags else "",
            font_size=font or 14, initial_drawing=drawing, disabled=not auth.can(user, "label"),
            key=key)
        # Where each box on the canvas is (bottom to top), for the bridge's hit test.
        rects = [[i, *coordinates.image_to_canvas(current["boxes"][i], fit).values()]
                 for i in mounted["on_canvas"] if i < len(current["boxes"])]
        bridge = canvas_bridge(rects, key="label_bridge", zoomed=fit.zoom > 1, header=f"#{image['id']} · ")
    problems += absorb_canvas(result.json_data)
    for problem in dict.fromkeys(problems):
        st.warning(problem)

    # What the bridge saw: the wheel, an Alt-drag, +/-/arrow keys, a click on a box.
    if bridge.zoom:
        set_view(current, coordinates.zoom_at(fit, coordinates.step_zoom(fit.zoom, bridge.zoom["steps"]),
                                              bridge.zoom["x"], bridge.zoom["y"]))
        redraw()
    if bridge.pan and fit.zoom > 1:
        set_view(current, coordinates.panned(fit, bridge.pan["dx"], bridge.pan["dy"]))
        redraw()
    if bridge.center and fit.zoom > 1:
        set_view(current, coordinates.zoomed(fit, fit.zoom, bridge.center["fx"] * fit.image_width,
                                             bridge.center["fy"] * fit.image_height))
        redraw()
    if bridge.select is not None:
        index = bridge.select.get("index")
        current["selected"] = index if index is None or index < len(current["boxes"]) else None

    with side:
        st.image(mounted["overview"], caption=(
            f"View {fit.zoom:g}×: x {fit.left:.0f}–{fit.left + fit.view_width:.0f}, "
            f"y {fit.top:.0f}–{fit.top + fit.view_height:.0f}"))
        pan = st.columns(4)
        moves = {"←": (-1, 0), "↑": (0, -1), "↓": (0, 1), "→": (1, 0)}
        keys = {"←": "Left", "↑": "Up", "↓": "Down", "→": "Right"}
        for column, (arrow, (dx, dy)) in zip(pan, moves.items()):
            if column.button(arrow, key=f"label_pan_{keys[arrow]}", shortcut=keys[arrow],
                             disabled=fit.zoom <= 1, help=f"Pan ({keys[arrow]} arrow key)"):
                set_view(current, coordinates.panned(fit, dx * fit.canvas_width / 3,
                                                     dy * fit.canvas_height / 3))
                redraw()
        st.caption("The wheel or the + and - keys zoom; Alt+drag, the arrow keys or a click on "
                   "this overview pan.")

    if current["dirty"]:
        st.caption("● unsaved changes — saved when you move to another image, or press Save (S)")
    st.caption(f"Draw with the mouse in the class **{common.plain(current_class['name'])}**. The toolbar's Edit "
               "toggle moves, resizes and selects boxes. Delete/Backspace deletes the selected "
               "box, Ctrl+Z / Ctrl+Shift+Z undo and redo, Tab selects the next box.")

    # Keys for the boxes (Streamlit button shortcuts, like N, S and 1–9).
    keys_row = st.container(horizontal=True)
    boxes = current["boxes"]
    selected = current["selected"]
    if keys_row.button("Delete box", key="label_key_delete", shortcut="Delete",
                       disabled=selected is None) or \
            keys_row.button("⌫", key="label_key_backspace", shortcut="Backspace",
                            help="Delete the selected box", disabled=selected is None):
        replace_boxes(annotations.edit_box(boxes, selected, delete=True))
        current["selected"] = current["highlight"] = None
        redraw()
    if keys_row.button("Undo", key="label_key_undo", shortcut="Ctrl+Z", disabled=not current["undo"]):
        current["redo"].append(current["boxes"])
        replace_boxes(current["undo"].pop(), record=False)
        redraw()
    if keys_row.button("Redo", key="label_key_redo", shortcut="Ctrl+Shift+Z",
                       disabled=not current["redo"]):
        current["undo"].append(current["boxes"])
        replace_boxes(current["redo"].pop(), record=False)
        redraw()
    if keys_row.button("Next box", key="label_key_tab", shortcut="Tab", disabled=not boxes):
        current["selected"] = current["highlight"] = \
            0 if selected is None else (selected + 1) % len(boxes)
        redraw()

    # The box list (filter, sort, click a row to select) and the editor of the selected box.
    left, right = st.columns([3, 2])
    with left:
        st.markdown(f"**Boxes** ({len(boxes)}, in image pixels)")
        if boxes:
            listing = st.container(horizontal=True)
            only = listing.multiselect("Show only classes", [label["name"] for label in labels],
                                       key="label_list_classes", placeholder="All classes",
                                       label_visibility="collapsed")
            sort = listing.selectbox("Sort by", annotations.BOX_SORTS, key="label_list_sort",
                                     label_visibility="collapsed")
            rows = annotations.box_table(boxes, labels, classes=only, sort=sort)
            picked = st.dataframe(rows, hide_index=True, width="stretch", on_select="rerun",
                                  selection_mode="single-row",
                                  key=f"label_box_table_{image['id']}_{current['rev']}_{selected}")
            chosen_rows = picked.selection.rows if picked else []
            if chosen_rows:
                number = rows[chosen_rows[0]]["#"]
                if number - 1 != selected:
                    current["selected"] = current["highlight"] = number - 1
                    redraw()
    with right:
        if boxes and selected is not None and selected < len(boxes):
            chosen = boxes[selected]
            st.markdown(f"**Box {selected + 1}** · {common.plain(label_by_id[chosen['label_id']]['name'])}")
            new_class = st.selectbox("Class of this box", list(label_by_id),
                                     index=list(label_by_id).index(chosen["label_id"]),
                                     format_func=lambda i: label_by_id[i]["name"],
                                     key=f"label_box_class_{image['id']}_{current['rev']}_{selected}")
            if new_class != chosen["label_id"]:
                replace_boxes(annotations.edit_box(boxes, selected, label_id=new_class))
                redraw()
            flags = st.columns(2)
            version_key = f"{image['id']}_{current['rev']}_{selected}"
            difficult = flags[0].checkbox("Difficult", value=bool(chosen.get("difficult")),
                                          key=f"label_box_difficult_{version_key}",
                                          help="Pascal VOC's flag: hard to recognise; evaluations may ignore it")
            truncated = flags[1].checkbox("Truncated", value=bool(chosen.get("truncated")),
                                          key=f"label_box_truncated_{version_key}",
                                          help="Pascal VOC's flag: the object extends beyond the box or image")
            if difficult != bool(chosen.get("difficult")) or truncated != bool(chosen.get("truncated")):
                replace_boxes(annotations.edit_box(boxes, selected, difficult=difficult, truncated=truncated))
                redraw()
            if chosen.get("source") == "model" and st.button("Accept this draft", width="stretch"):
                replace_boxes(annotations.edit_box(boxes, selected, accept=True))
                redraw()
        elif boxes:
            st.caption("Select a box: click it in the canvas's Edit mode, click its row, or press Tab.")
        drafts = annotations.draft_count(boxes)
        if drafts:
            st.caption(f"{drafts} model drafts (dashed)")
            draft_cols = st.columns(2)
            draft_cols[0].button("Accept all drafts", width="stretch", on_click=do_accept_drafts)
            draft_cols[1].button("Delete all drafts", width="stretch", on_click=do_reject_drafts)
        previous = S.get("label_previous_image")
        if previous and previous["project_id"] == project["id"] and \
                st.button(f"Copy boxes from previous image (#{previous['id']})"):
            copied = annotations.scaled_copy(annotations.get_boxes(db, previous["id"], source="human"),
                                             previous, image)
            replace_boxes(boxes + copied)
            redraw()


canvas_and_boxes()

# ---------------------------------------------------------------- save, submit, skip

actions = st.columns([1, 1.3, 1, 1.6, 1])
actions[0].button("Save", shortcut="S", type="primary", width="stretch", on_click=do_save)
actions[1].button("Submit as labeled", shortcut="Ctrl+Enter", width="stretch", on_click=do_submit)
actions[2].button("No objects", help="A negative image: exported with zero boxes",
                  width="stretch", on_click=do_no_objects)
actions[3].text_input("Skip reason", key=f"label_skip_{image['id']}",
                      placeholder="Skip reason", label_visibility="collapsed")
actions[4].button("Skip", width="stretch", on_click=do_skip,
                  help="Take the image out of the queue with the reason beside, and go on to the next")

with st.expander("History of this image"):
    st.dataframe(annotations.history_table(db, image["id"]), hide_index=True, width="stretch")

# The pictures of the image N would open next are rendered now, in a thread at the lowest CPU
# priority (resizing a large photo for the canvas and the overview took 0.1–1.2 s of N → ready
# when done on N, under load; bench/label_trace.py): N then finds them in the disk cache.
if current["mine"] and auth.can(user, "label"):
    upcoming = labeling.peek_next_image(db, user, project["id"], order=S.get("label_order", "id"),
                                        exclude={*S.get("label_passed", []), image["id"]},
                                        resume_own=bool(S.get("label_resume_own")))
    if upcoming and S.get("label_prepared") != upcoming["id"]:
        S["label_prepared"] = upcoming["id"]
        canvas.prepare_display_soon(upcoming)
