"""What the label page's canvas (streamlit-drawable-canvas, `drawing_mode="labeled_rect"`)
shows and sends back, translated to and from database boxes.

On the canvas a box is a Fabric.js `LabeledRect` whose label chip is the class name; a model
draft reads `"cat 0.91?"` and is drawn dashed. The canvas sends back `{label, left, top,
width, height}` in canvas pixels; `boxes_from_canvas` turns them into database boxes
through `coordinates.canvas_to_image`, keeping a draft a draft only while it is untouched.
"""
from __future__ import annotations

import io
import re

from PIL import Image

from backend import atomic, coordinates, settings
from backend.formats import boxes as box_math
from backend.images import image_file

STROKE_WIDTH = 2
DRAFT_DASH = [6, 4]
_DRAFT_LABEL = re.compile(r"^(?P<name>.+) (?P<score>[01]\.\d\d)\?$")
# A draft moved or resized by more than this (image pixels) counts as adjusted by a human.
_DRAFT_TOLERANCE = 0.5


def box_label(box: dict, label: dict) -> str:
    """The text on a box's chip: the class name, plus the score and `?` for a model draft."""
    if box.get("source") == "model":
        return f"{label['name']} {float(box.get('score') or 0):.2f}?"
    return label["name"]


def drawing(boxes: list[dict], labels: list[dict], fit: coordinates.DisplayFit) -> dict:
    """An `initial_drawing` for `st_canvas`: each box in its class colour, drafts dashed."""
    by_id = {label["id"]: label for label in labels}
    objects = []
    for box in boxes:
        label = by_id.get(box["label_id"])
        if label is None:
            continue
        rect = coordinates.image_to_canvas(box, fit)
        objects.append({
            "type": "LabeledRect", "label": box_label(box, label),
            "left": rect["left"], "top": rect["top"], "width": rect["width"], "height": rect["height"],
            "originX": "left", "originY": "top", "scaleX": 1, "scaleY": 1, "angle": 0,
            "stroke": label["color"], "strokeWidth": STROKE_WIDTH, "fill": "rgba(0, 0, 0, 0)",
            "strokeDashArray": DRAFT_DASH if box.get("source") == "model" else None,
            "lockRotation": True, "strokeUniform": True})
    return {"objects": objects}


def boxes_from_canvas(canvas_boxes: list[dict], labels: list[dict], fit: coordinates.DisplayFit,
                      previous: list[dict]) -> tuple[list[dict], list[str]]:
    """Database boxes (image pixels) from `CanvasResult.boxes`, and a message per box whose
    label is not a class of the project (those are left out).

    A box still labeled as a draft and within half a pixel of one of `previous`'s drafts stays
    that draft (`source='model'`, its score); anything else is a human box. The canvas knows
    nothing of the `difficult`/`truncated` flags: a box keeps those of the `previous` box it
    still is (same class and place within half a pixel; for a moved or resized box, the
    same-class box it overlaps most).
    """
    by_name = {label["name"]: label for label in labels}
    open_drafts = [b for b in previous if b.get("source") == "model"]
    boxes, problems = [], []
    for number, shape in enumerate(canvas_boxes, start=1):
        pixels = coordinates.canvas_to_image(shape, fit)
        text = (shape.get("label") or "").strip()
        draft = _DRAFT_LABEL.match(text)
        name = draft.group("name") if draft and draft.group("name") in by_name else text
        label = by_name.get(name)
        if label is None:
            problems.append(f"box {number}: {text or 'no class'!s} is not a class of this project; "
                            "pick a class and draw it again")
            continue
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


def _same_place(a: dict, b: dict) -> bool:
    """Same class, every corner within half a pixel."""
    return a["label_id"] == b["label_id"] and all(
        abs(a[k] - b[k]) <= _DRAFT_TOLERANCE for k in ("xmin", "ymin", "xmax", "ymax"))


def _matching_draft(box: dict, drafts: list[dict]) -> dict | None:
    return next((draft for draft in drafts if _same_place(draft, box)), None)


def display_image(image: dict, fit: coordinates.DisplayFit) -> bytes:
    """A copy of the stored image at exactly the canvas size (cached on disk), so the canvas
    shows large images downscaled while boxes stay in full-resolution pixels."""
    target = settings.subdir("cache") / "display" / image["sha256"][:2] / \
        f"{image['sha256']}-{fit.canvas_width}x{fit.canvas_height}.jpg"
    if not target.exists():
        with Image.open(image_file(image)) as source:
            rgb = source.convert("RGB")
            enlarging = fit.canvas_width > image["width"]
            resized = rgb.resize((fit.canvas_width, fit.canvas_height),
                                 Image.Resampling.NEAREST if enlarging else Image.Resampling.LANCZOS)
        out = io.BytesIO()
        resized.save(out, format="JPEG", quality=90)
        atomic.write_bytes(target, out.getvalue())
        return out.getvalue()
    return target.read_bytes()
