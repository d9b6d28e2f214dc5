"""The label page's canvas drawing and what it sends back, as database boxes."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from backend import canvas, coordinates, images, projects
from tests.helpers import image_bytes


@pytest.fixture
def labels(db, project):
    return projects.list_labels(db, project["id"])


def test_drawing_and_back_keeps_boxes_drafts_and_colours(labels):
    fit = coordinates.display_fit(4000, 3000)
    cat, dog = labels[0], labels[1]
    boxes = [{"label_id": cat["id"], "xmin": 100.0, "ymin": 200.0, "xmax": 900.0, "ymax": 1000.0,
              "source": "human", "score": None},
             {"label_id": dog["id"], "xmin": 2000.0, "ymin": 1500.0, "xmax": 2600.0, "ymax": 2900.0,
              "source": "model", "score": 0.876}]
    drawn = canvas.drawing(boxes, labels, fit)
    assert [o["label"] for o in drawn["objects"]] == ["cat", "dog 0.88?"]
    assert [o["stroke"] for o in drawn["objects"]] == [cat["color"], dog["color"]]
    assert [o["strokeDashArray"] for o in drawn["objects"]] == [None, canvas.DRAFT_DASH]
    sent = [{k: o[k] for k in ("label", "left", "top", "width", "height")} for o in drawn["objects"]]
    back, problems = canvas.boxes_from_canvas(sent, labels, fit, boxes)
    assert problems == []
    assert [(b["source"], b["score"]) for b in back] == [("human", None), ("model", 0.876)]
    for got, want in zip(back, boxes):
        for key in ("xmin", "ymin", "xmax", "ymax"):
            assert got[key] == pytest.approx(want[key], abs=1e-6)


def test_moved_or_relabeled_draft_becomes_a_human_box(labels):
    fit = coordinates.display_fit(1920, 200)
    dog = labels[1]
    draft = {"label_id": dog["id"], "xmin": 10.0, "ymin": 10.0, "xmax": 110.0, "ymax": 90.0,
             "source": "model", "score": 0.5}
    rect = coordinates.image_to_canvas(draft, fit)
    moved = {"label": "dog 0.50?", **rect, "left": rect["left"] + 5}
    relabeled = {"label": "bird", **rect}
    back, _ = canvas.boxes_from_canvas([moved, relabeled], labels, fit, [draft])
    assert [(b["source"], b["label_id"]) for b in back] == [("human", dog["id"]), ("human", labels[2]["id"])]
    assert back[0]["xmin"] == pytest.approx(10.0 + 5 / fit.scale_x)


def test_difficult_and_truncated_flags_survive_the_canvas(labels):
    """The canvas has no flags: unchanged boxes keep theirs, a moved one those of the box it
    overlaps most, a new one none."""
    fit = coordinates.display_fit(640, 480)
    cat, dog = labels[0], labels[1]
    stored = [{"label_id": cat["id"], "xmin": 10.0, "ymin": 10.0, "xmax": 100.0, "ymax": 90.0,
               "source": "human", "score": None, "difficult": 1, "truncated": 0},
              {"label_id": dog["id"], "xmin": 200.0, "ymin": 50.0, "xmax": 300.0, "ymax": 200.0,
               "source": "human", "score": None, "difficult": 0, "truncated": 1}]
    sent = [{k: o[k] for k in ("label", "left", "top", "width", "height")}
            for o in canvas.drawing(stored, labels, fit)["objects"]]
    back, _ = canvas.boxes_from_canvas(sent, labels, fit, stored)
    assert [(b["difficult"], b["truncated"]) for b in back] == [(1, 0), (0, 1)]
    sent[1]["left"] += 40                                             # the dog box moved
    sent.insert(0, {"label": "cat", "left": 400, "top": 300, "width": 50, "height": 50})  # a new box
    back, _ = canvas.boxes_from_canvas(sent, labels, fit, stored)
    assert [(b["label_id"], b["difficult"], b["truncated"]) for b in back] == \
        [(cat["id"], 0, 0), (cat["id"], 1, 0), (dog["id"], 0, 1)]


def test_unknown_label_is_reported_not_saved(labels):
    fit = coordinates.display_fit(100, 100)
    back, problems = canvas.boxes_from_canvas(
        [{"label": "", "left": 1, "top": 1, "width": 50, "height": 50}], labels, fit, [])
    assert back == [] and problems == ["box 1: no class is not a class of this project; "
                                       "pick a class and draw it again"]


def test_display_image_is_the_canvas_size(db, admin, project):
    report = images.ingest(db, admin, project["id"], [("big.png", image_bytes((4000, 3000), fmt="PNG"))])
    image = images.get_image(db, report.items[0].image_id)
    fit = coordinates.display_fit(image["width"], image["height"])
    data = canvas.display_image(image, fit)
    assert Image.open(io.BytesIO(data)).size == (fit.canvas_width, fit.canvas_height)
    assert canvas.display_image(image, fit) == data  # served from the cache the second time
