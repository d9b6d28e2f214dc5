"""What the label page's canvas (streamlit-drawable-canvas, `drawing_mode="labeled_rect"`)
shows and sends back, translated to and from database boxes.

On the canvas a box is a Fabric.js `LabeledRect` whose label chip is the class name; a model
draft reads `"cat 0.91?"` and is drawn dashed. The canvas sends back `{label, left, top,
width, height}` in canvas pixels; `boxes_from_canvas` turns them into database boxes
through `coordinates.canvas_to_image`, keeping a draft a draft only while it is untouched.
"""
from __future__ import annotations

import base64
import io
import os
import re
import sys
import threading

from PIL import Image, ImageDraw

from backend import atomic, coordinates, settings
from backend.formats import boxes as box_math
from backend.images import image_file

STROKE_WIDTH = 2
SELECTED_STROKE_WIDTH = 4
DRAFT_DASH = [6, 4]
_DRAFT_LABEL = re.compile(r"^(?P<name>.+) (?P<score>[01]\.\d\d)\?$")
# A draft moved or resized by more than this (image pixels) counts as adjusted by a human.
_DRAFT_TOLERANCE = 0.5


def box_label(box: dict, label: dict) -> str:
    """The text on a box's chip: the class name, plus the score and `?` for a model draft."""
    if box.get("source") == "model":
        return f"{label['name']} {float(box.get('score') or 0):.2f}?"
    return label["name"]


def tag_font_size(zoom: float) -> int:
    """The chip's font size at a zoom: small at 1× (dense images stay readable), growing with
    the zoom up to 16 px."""
    return int(min(16, round(9 + zoom)))


def drawing(boxes: list[dict], labels: list[dict], fit: coordinates.DisplayFit, *,
            font_size: int | None = 14, selected: int | None = None) -> dict:
    """An `initial_drawing` for `st_canvas`: each box in its class colour, drafts dashed, the
    `selected` one (index into `boxes`) drawn thicker. `font_size=None` draws no label chips."""
    by_id = {label["id"]: label for label in labels}
    objects = []
    for index, box in enumerate(boxes):
        label = by_id.get(box["label_id"])
        if label is None:
            continue
        rect = coordinates.image_to_canvas(box, fit)
        objects.append({
            "type": "LabeledRect", "label": box_label(box, label) if font_size else "",
            "fontSize": font_size or 14,
            "left": rect["left"], "top": rect["top"], "width": rect["width"], "height": rect["height"],
            "originX": "left", "originY": "top", "scaleX": 1, "scaleY": 1, "angle": 0,
            "stroke": label["color"],
            "strokeWidth": SELECTED_STROKE_WIDTH if index == selected else STROKE_WIDTH,
            "fill": "rgba(0, 0, 0, 0)",
            "strokeDashArray": DRAFT_DASH if box.get("source") == "model" else None,
            "lockRotation": True, "strokeUniform": True})
    return {"objects": objects}


def shown_boxes(boxes: list[dict], fit: coordinates.DisplayFit,
                hidden_label_ids: set[int] = frozenset()) -> list[int]:
    """Indices of the boxes the canvas shows: in the view, of a class that is not hidden."""
    return [i for i, box in enumerate(boxes)
            if box["label_id"] not in hidden_label_ids and fit.shows(box)]


def canvas_shapes(json_data: dict | None) -> list[dict]:
    """`{label, left, top, width, height, stroke}` (canvas pixels) of every box in the canvas's
    Fabric.js JSON, scale and origin applied (a box resized on the canvas has `scaleX`/`scaleY`
    ≠ 1 until it is redrawn)."""
    offset = {"left": 0.0, "top": 0.0, "center": 0.5, "right": 1.0, "bottom": 1.0}
    shapes = []
    for obj in (json_data or {}).get("objects", []):
        if obj.get("type") != "LabeledRect":
            continue
        width = obj.get("width", 0) * obj.get("scaleX", 1)
        height = obj.get("height", 0) * obj.get("scaleY", 1)
        shapes.append({"label": obj.get("label", ""), "stroke": obj.get("stroke"),
                       "left": obj.get("left", 0) - offset[obj.get("originX", "left")] * width,
                       "top": obj.get("top", 0) - offset[obj.get("originY", "top")] * height,
                       "width": width, "height": height})
    return shapes


def merge_view(boxes: list[dict], shown: list[int], edited: list[dict]) -> tuple[list[dict], list[int]]:
    """The whole image's box list after the canvas, which showed `boxes[i]` for `i` in `shown`,
    sent back `edited` (database boxes, in canvas order), and where each of `edited` is in it.

    Boxes the canvas did not show stay as they are and where they are; a shown box still in
    the same place keeps its position in the list; the rest of the shown positions take the
    changed boxes in canvas order (a moved or relabeled box keeps its number); shown positions
    left over were deleted, and extra boxes (new) go at the end."""
    slots: list[tuple[dict, int | None] | None] = [(box, None) for box in boxes]
    remaining = list(range(len(edited)))
    open_positions = []
    for position in shown:
        same = next((k for k in remaining if _same_place(boxes[position], edited[k])), None)
        if same is None:
            open_positions.append(position)
        else:
            remaining.remove(same)
            slots[position] = (edited[same], same)
    for position in open_positions:
        slots[position] = (edited[remaining[0]], remaining.pop(0)) if remaining else None
    kept = [slot for slot in slots if slot is not None] + [(edited[k], k) for k in remaining]
    where = {k: position for position, (_, k) in enumerate(kept) if k is not None}
    return [box for box, _ in kept], [where[k] for k in range(len(edited))]


def boxes_from_canvas(canvas_boxes: list[dict], labels: list[dict], fit: coordinates.DisplayFit,
                      previous: list[dict], current_label_id: int | None = None
                      ) -> tuple[list[dict], list[str]]:
    """Database boxes (image pixels) from the canvas's boxes (`canvas_shapes`, or
    `CanvasResult.boxes`), and a message per box whose label is not a class of the project.

    Such a box (a typo while relabeling on the canvas, or a chip-less box) is never dropped:
    it keeps the class of the `previous` box it still is (same place, or the one it overlaps
    most), else takes the class whose colour it has (the current class first), else
    `current_label_id`; only with none of those is it left out.

    A box still labeled as a draft and within half a pixel of one of `previous`'s drafts stays
    that draft (`source='model'`, its score); anything else is a human box. The canvas knows
    nothing of the `difficult`/`truncated` flags: a box keeps those of the `previous` box it
    still is (same class and place within half a pixel; for a moved or resized box, the
    same-class box it overlaps most).
    """
    by_name = {label["name"]: label for label in labels}
    by_id = {label["id"]: label for label in labels}
    open_drafts = [b for b in previous if b.get("source") == "model"]
    boxes, problems = [], []
    for number, shape in enumerate(canvas_boxes, start=1):
        pixels = coordinates.canvas_to_image(shape, fit)
        text = (shape.get("label") or "").strip()
        draft = _DRAFT_LABEL.match(text)
        name = draft.group("name") if draft and draft.group("name") in by_name else text
        label = by_name.get(name)
        if label is None:
            # The canvas sends its boxes in the order it was given them, so the box at this
            # place in `previous` is the first one to compare with.
            hint = previous[number - 1] if number <= len(previous) else None
            label = _fallback_label(pixels, shape.get("stroke"), previous, by_id, current_label_id,
                                    hint=hint)
            if label is None:
                problems.append(f"box {number}: {text or 'no class'!s} is not a class of this "
                                "project; pick a class and draw it again")
                continue
            if text:
                problems.append(f"box {number}: {text!r} is not a class of this project; kept as "
                                f"{label['name']} — pick its class in the box editor")
        box = {"label_id": label["id"], **pixels, "source": "human", "score": None,
               "difficult": 0, "truncated": 0}
        if draft:
            match = _matching_draft(box, open_drafts)
            if match is not None:
                open_drafts.remove(match)
                box.update(source="model", score=match.get("score"),
                           **{k: match[k] for k in ("xmin", "ymin", "xmax", "ymax")})
        boxes.append(box)
    _carry_flags(boxes, previous)
    return boxes, problems


def _fallback_label(pixels: dict, stroke: str | None, previous: list[dict], by_id: dict,
                    current_label_id: int | None, hint: dict | None = None) -> dict | None:
    """The class of a box whose chip names no class (see `boxes_from_canvas`). A box still
    where `hint` (a box of `previous`) is takes its class without an overlap search against
    every box (with tags off every box on the canvas is chip-less: reading 280 of them back
    and merging them took 180 ms with that search for each, 5.5 ms with this)."""
    if hint is not None and hint["label_id"] in by_id and _same_corners(hint, pixels):
        return by_id[hint["label_id"]]
    overlaps = [(box_math.iou(_corners(pixels), _corners(box)), box) for box in previous
                if box["label_id"] in by_id]
    best = max(overlaps, default=(0.0, None), key=lambda pair: pair[0])
    if best[0] >= 0.3:
        return by_id[best[1]["label_id"]]
    if stroke:
        current = by_id.get(current_label_id)
        if current and current["color"].upper() == stroke.upper():
            return current
        same_colour = [label for label in by_id.values() if label["color"].upper() == stroke.upper()]
        if len(same_colour) == 1:
            return same_colour[0]
    return by_id.get(current_label_id)


def _carry_flags(boxes: list[dict], previous: list[dict]) -> None:
    """Give each box the flags of the previous box it still is: first exact matches (same class,
    within half a pixel), then, for moved or resized boxes, the unclaimed previous box of the
    same class that overlaps it most (IoU ≥ 0.3)."""
    unclaimed = list(range(len(previous)))

    def claim(index: int, box: dict) -> None:
        unclaimed.remove(index)
        box.update({k: int(previous[index].get(k) or 0) for k in ("difficult", "truncated")})

    pending = []
    for box in boxes:
        same = next((i for i in unclaimed if _same_place(previous[i], box)), None)
        if same is None:
            pending.append(box)
        else:
            claim(same, box)
    for box in pending:
        overlaps = [(box_math.iou(_corners(box), _corners(previous[i])), i) for i in unclaimed
                    if previous[i]["label_id"] == box["label_id"]]
        best = max(overlaps, default=(0.0, None))
        if best[0] >= 0.3:
            claim(best[1], box)


def _corners(box: dict) -> tuple[float, float, float, float]:
    return box["xmin"], box["ymin"], box["xmax"], box["ymax"]


def _same_corners(a: dict, b: dict) -> bool:
    """Every corner within half a pixel."""
    return all(abs(a[k] - b[k]) <= _DRAFT_TOLERANCE for k in ("xmin", "ymin", "xmax", "ymax"))


def _same_place(a: dict, b: dict) -> bool:
    """Same class, every corner within half a pixel."""
    return a["label_id"] == b["label_id"] and _same_corners(a, b)


def _matching_draft(box: dict, drafts: list[dict]) -> dict | None:
    return next((draft for draft in drafts if _same_place(draft, box)), None)


OVERVIEW_WIDTH = 240


def display_image(image: dict, fit: coordinates.DisplayFit) -> bytes:
    """The canvas background at exactly the canvas size (cached on disk): the whole image
    downscaled at 1×, or, zoomed in, the view's region of the stored image resized to the
    canvas, so boxes stay in full-resolution pixels. (The page never waits for the thread of
    `prepare_display_soon`: that one runs at nice 19, so waiting for it could take longer than
    resizing again; both write the same file atomically.)"""
    view = "" if fit.zoom == 1 else f"-z{fit.zoom:g}-{fit.left:.3f}-{fit.top:.3f}"
    target = settings.subdir("cache") / "display" / image["sha256"][:2] / \
        f"{image['sha256']}-{fit.canvas_width}x{fit.canvas_height}{view}.jpg"
    if target.exists():
        return target.read_bytes()
    region = (fit.left, fit.top, fit.left + fit.view_width, fit.top + fit.view_height)
    with Image.open(image_file(image)) as source:
        rgb = source.convert("RGB")
        enlarging = fit.scale_x > 1
        resized = rgb.resize((fit.canvas_width, fit.canvas_height),
                             Image.Resampling.NEAREST if enlarging else Image.Resampling.LANCZOS,
                             box=region)
    out = io.BytesIO()
    resized.save(out, format="JPEG", quality=90)
    atomic.write_bytes(target, out.getvalue())
    return out.getvalue()


def prepare_display(image: dict) -> None:
    """Render into the disk cache the two pictures opening `image` on the Label page needs
    first: the canvas background of the whole image and the overview's small copy. A picture
    that cannot be made is left for the page to report when the image is opened."""
    try:
        display_image(image, coordinates.display_fit(image["width"], image["height"]))
        display_image(image, coordinates.display_fit(image["width"], image["height"],
                                                     OVERVIEW_WIDTH, OVERVIEW_WIDTH))
    except OSError:
        pass


def prepare_display_soon(image: dict) -> threading.Thread:
    """`prepare_display` in a thread of its own, started now; on Linux the thread runs at the
    lowest CPU priority (nice 19, that thread alone), so it takes only CPU time nothing else
    wants. The Label page calls this for the image N would open next, so N does not wait for
    a large photo to be resized."""
    def work() -> None:
        if sys.platform == "linux":
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        prepare_display(image)
    thread = threading.Thread(target=work, daemon=True, name="boxwise-prepare-display")
    thread.start()
    return thread


def display_data_url(image: dict, fit: coordinates.DisplayFit) -> str:
    """`display_image` as a `data:` URL, the form `st_canvas` takes as it is (given bytes, it
    hashes and base64-encodes them again on every run)."""
    return "data:image/jpeg;base64," + base64.b64encode(display_image(image, fit)).decode("ascii")


def overview_image(image: dict, fit: coordinates.DisplayFit, width: int = OVERVIEW_WIDTH) -> bytes:
    """A small copy of the whole image with the view's rectangle drawn on it (PNG)."""
    whole = coordinates.display_fit(image["width"], image["height"], width, width)
    small = Image.open(io.BytesIO(display_image(image, whole))).convert("RGB")
    scale = whole.scale_x
    pen = ImageDraw.Draw(small)
    rect = [fit.left * scale, fit.top * scale, (fit.left + fit.view_width) * scale - 1,
            (fit.top + fit.view_height) * scale - 1]
    pen.rectangle(rect, outline=(255, 0, 0), width=2)
    out = io.BytesIO()
    small.save(out, format="PNG")
    return out.getvalue()
