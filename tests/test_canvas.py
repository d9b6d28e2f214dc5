"""The label page's canvas drawing and what it sends back, as database boxes."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from backend import canvas, coordinates, images, projects, settings
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


def test_prepare_display_renders_the_canvas_and_overview_pictures_ahead(db, admin, project, tmp_path):
    report = images.ingest(db, admin, project["id"], [("big.png", image_bytes((4000, 3000), fmt="PNG"))])
    image = images.get_image(db, report.items[0].image_id)
    folder = settings.subdir("cache") / "display" / image["sha256"][:2]
    assert not folder.exists()
    canvas.prepare_display(image)
    assert sorted(p.name for p in folder.iterdir()) == [f"{image['sha256']}-240x180.jpg",
                                                        f"{image['sha256']}-960x720.jpg"]
    made = (folder / f"{image['sha256']}-960x720.jpg").read_bytes()
    # What the page asks for when the image is opened is that picture, from the cache.
    assert canvas.display_image(image, coordinates.display_fit(4000, 3000)) == made
    assert Image.open(io.BytesIO(made)).size == (960, 720)
    # A stored file gone missing: nothing made, nothing raised (the page reports it on opening).
    images.image_file(image).unlink()
    canvas.prepare_display({**image, "sha256": "0" * 64})
    assert not (settings.subdir("cache") / "display" / "00").exists()


def test_prepare_display_soon_runs_at_the_lowest_priority_and_the_data_url_is_the_picture(
        db, admin, project, monkeypatch):
    import base64
    import os
    import sys
    import threading

    report = images.ingest(db, admin, project["id"], [("big.png", image_bytes((4000, 3000), fmt="PNG"))])
    image = images.get_image(db, report.items[0].image_id)
    seen = []
    render = canvas.display_image

    def spy(image, fit):
        seen.append((os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), fit.canvas_width))
        return render(image, fit)
    monkeypatch.setattr(canvas, "display_image", spy)
    canvas.prepare_display_soon(image).join()
    niced = 19 if sys.platform == "linux" else os.getpriority(os.PRIO_PROCESS, 0)
    assert seen == [(niced, 960), (niced, 240)]
    # The thread's priority is its own: this one is unchanged.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) != 19
    fit = coordinates.display_fit(4000, 3000)
    url = canvas.display_data_url(image, fit)
    assert url.startswith("data:image/jpeg;base64,/9j/")
    assert base64.b64decode(url.split(",", 1)[1]) == render(image, fit)


def test_a_zoomed_canvas_merges_back_into_the_whole_list(labels):
    """The canvas shows only what is in view and not hidden; what it sends back is put where
    the shown boxes were, the others stay untouched, new boxes go last."""
    cat, dog = labels[0], labels[1]
    fit = coordinates.zoomed(coordinates.display_fit(800, 600), 4, 700, 500)
    boxes = [{"label_id": cat["id"], "xmin": 10.0, "ymin": 10.0, "xmax": 30.0, "ymax": 30.0},  # out of view
             {"label_id": cat["id"], "xmin": 650.0, "ymin": 480.0, "xmax": 670.0, "ymax": 500.0},
             {"label_id": dog["id"], "xmin": 700.0, "ymin": 500.0, "xmax": 720.0, "ymax": 520.0},  # hidden class
             {"label_id": cat["id"], "xmin": 740.0, "ymin": 530.0, "xmax": 760.0, "ymax": 560.0}]
    boxes = [{**b, "source": "human", "score": None, "difficult": 0, "truncated": 0} for b in boxes]
    shown = canvas.shown_boxes(boxes, fit, {dog["id"]})
    assert shown == [1, 3]
    drawn = canvas.drawing([boxes[i] for i in shown], labels, fit, font_size=None)
    assert [o["label"] for o in drawn["objects"]] == ["", ""]  # tags off
    sent = canvas.canvas_shapes(drawn)
    sent[0]["left"] += 48          # box 2 moved right by 10 image px (4.8 canvas px each)
    del sent[1]                    # box 4 deleted
    sent.append({"label": "", "stroke": cat["color"], "left": 0.0, "top": 0.0, "width": 48.0, "height": 48.0})
    edited, problems = canvas.boxes_from_canvas(sent, labels, fit, [boxes[i] for i in shown],
                                                current_label_id=cat["id"])
    assert problems == []
    merged, where = canvas.merge_view(boxes, shown, edited)
    assert [(b["label_id"], round(b["xmin"], 9), round(b["ymin"], 9)) for b in merged] == \
        [(cat["id"], 10.0, 10.0), (cat["id"], 660.0, 480.0), (dog["id"], 700.0, 500.0),
         (cat["id"], 600.0, 425.0)]
    assert where == [1, 3]
    assert merged[3]["xmax"] == pytest.approx(fit.left + 10.0)


def test_a_relabeling_typo_keeps_the_box_in_its_class(labels):
    fit = coordinates.display_fit(640, 480)
    cat = labels[0]
    stored = [{"label_id": cat["id"], "xmin": 10.0, "ymin": 10.0, "xmax": 100.0, "ymax": 90.0,
               "source": "human", "score": None, "difficult": 0, "truncated": 0}]
    sent = [{**o, "label": "banana"} for o in canvas.canvas_shapes(canvas.drawing(stored, labels, fit))]
    back, problems = canvas.boxes_from_canvas(sent, labels, fit, stored, current_label_id=labels[1]["id"])
    assert [b["label_id"] for b in back] == [cat["id"]]
    assert problems == ["box 1: 'banana' is not a class of this project; kept as cat — pick its "
                        "class in the box editor"]


def test_zoomed_display_image_is_the_views_region(db, admin, project):
    picture = Image.new("RGB", (800, 600), (0, 0, 255))
    picture.paste((255, 0, 0), (700, 525, 800, 600))  # the bottom-right corner is red
    out = io.BytesIO()
    picture.save(out, format="PNG")
    report = images.ingest(db, admin, project["id"], [("corner.png", out.getvalue())])
    image = images.get_image(db, report.items[0].image_id)
    corner = coordinates.zoomed(coordinates.display_fit(800, 600), 8, 800, 600)
    shown = Image.open(io.BytesIO(canvas.display_image(image, corner))).convert("RGB")
    assert shown.size == (960, 720)
    red, green, blue = shown.getpixel((480, 360))
    assert red > 240 and green < 15 and blue < 15
    overview = Image.open(io.BytesIO(canvas.overview_image(image, corner))).convert("RGB")
    assert overview.size == (240, 180)
    assert overview.getpixel((210, 170)) == (255, 0, 0)  # its left edge: x 700 at 0.3 px per px


def test_chipless_boxes_read_back_in_their_own_classes(labels):
    """Tags off: no box on the canvas names its class. Each one still where it was keeps the
    class of the box given at its place, one that moved that of the box it overlaps most, and
    a box sent out of order is not given its neighbour's class."""
    cat, dog = labels[0], labels[1]
    fit = coordinates.display_fit(1249, 1035)
    stored = [{"label_id": (cat, dog)[k % 2]["id"], "xmin": 10.0 + 40 * (k % 30),
               "ymin": 10.0 + 100 * (k // 30), "xmax": 30.0 + 40 * (k % 30),
               "ymax": 40.0 + 100 * (k // 30), "source": "human", "score": None,
               "difficult": 0, "truncated": 0} for k in range(280)]
    sent = canvas.canvas_shapes(canvas.drawing(stored, labels, fit, font_size=None))
    assert {shape["label"] for shape in sent} == {""}
    sent[5]["left"] += 3                      # box 6 (a dog) moved by 3 canvas px
    sent[7], sent[8] = sent[8], sent[7]       # a dog and a cat sent the other way round
    back, problems = canvas.boxes_from_canvas(sent, labels, fit, stored, current_label_id=cat["id"])
    assert problems == []
    expected = [b["label_id"] for b in stored]
    expected[7], expected[8] = expected[8], expected[7]
    assert [b["label_id"] for b in back] == expected
    assert back[5]["xmin"] == pytest.approx(stored[5]["xmin"] + 3 / fit.scale_x)
