"""Boxes: clipping, the 2 px rule, version checks, history, and model drafts."""
from __future__ import annotations

import pytest

from backend import annotations, db as database, images, labeling, projects
from backend.errors import Conflict, Invalid
from tests.helpers import image_bytes


@pytest.fixture
def image(db, admin, project):
    report = images.ingest(db, admin, project["id"], [("a.png", image_bytes((200, 100), fmt="PNG"))])
    return images.get_image(db, report.items[0].image_id)


@pytest.fixture
def classes(db, project):
    return {r["name"]: r["id"] for r in db.query("select id, name from labels where project_id = ?",
                                                  [project["id"]])}


def box(label, x0, y0, x1, y1, **extra):
    return {"label_id": label, "xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1, **extra}


def put_drafts(db, image, boxes):
    """What batch prediction stores: model boxes with scores (written directly, as its engineer does)."""
    db["annotations"].insert_all([{**b, "image_id": image["id"], "source": "model",
                                   "created_at": database.now()} for b in boxes])


def test_boxes_are_clipped_to_the_image(db, users, image, classes):
    annotations.save_boxes(db, users["labeler"], image["id"],
                           [box(classes["cat"], -10, -5, 50.5, 60), box(classes["dog"], 190, 90, 230, 140)], 0)
    stored = [(b["xmin"], b["ymin"], b["xmax"], b["ymax"]) for b in annotations.get_boxes(db, image["id"])]
    assert stored == [(0.0, 0.0, 50.5, 60.0), (190.0, 90.0, 200.0, 100.0)]


def test_boxes_under_two_pixels_are_refused_with_a_message(db, users, image, classes):
    with pytest.raises(Invalid, match=r"box 2: 1\.5×20\.0 px inside the image; boxes need at least 2 px"):
        annotations.save_boxes(db, users["labeler"], image["id"],
                               [box(classes["cat"], 0, 0, 10, 10), box(classes["cat"], 10, 10, 11.5, 30)], 0)
    assert annotations.get_boxes(db, image["id"]) == []
    assert images.get_image(db, image["id"])["version"] == 0


def test_stale_save_is_refused_with_who_and_when_and_force_overwrites(db, users, image, classes):
    annotations.save_boxes(db, users["reviewer"], image["id"], [box(classes["cat"], 1, 1, 20, 20)], 0)
    with pytest.raises(Conflict, match=r"changed by reviewer at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
                                       r"\(version 1, you started from 0\)"):
        annotations.save_boxes(db, users["labeler"], image["id"], [box(classes["dog"], 5, 5, 50, 50)], 0)
    assert [b["label_id"] for b in annotations.get_boxes(db, image["id"])] == [classes["cat"]]
    saved = annotations.save_boxes(db, users["labeler"], image["id"],
                                   [box(classes["dog"], 5, 5, 50, 50)], 0, force=True)
    assert saved["version"] == 2
    assert [b["label_id"] for b in annotations.get_boxes(db, image["id"])] == [classes["dog"]]
    boxes = [e for e in annotations.history(db, image["id"]) if e["kind"] == "boxes"]
    assert [(e["username"], len(e["before"]), e["after"][0]["label_id"]) for e in boxes] == \
        [("labeler", 1, classes["dog"]), ("reviewer", 0, classes["cat"])]


def test_drafts_accepted_become_human_boxes_and_history_says_so(db, users, image, classes):
    put_drafts(db, image, [box(classes["cat"], 10, 10, 60, 60, score=0.91),
                           box(classes["dog"], 100, 20, 150, 80, score=0.42)])
    drafts = annotations.drafts(db, image["id"])
    assert [(d["source"], d["score"]) for d in drafts] == [("model", 0.91), ("model", 0.42)]
    updated = annotations.accept_drafts(db, users["labeler"], image["id"], [drafts[0]["id"]], 0)
    assert (updated["version"], updated["status"]) == (1, "in_progress")
    rows = annotations.get_boxes(db, image["id"])
    assert [(r["source"], r["score"], r["created_by"]) for r in rows] == \
        [("human", None, users["labeler"]["id"]), ("model", 0.42, None)]
    event = [e for e in annotations.history(db, image["id"]) if e["kind"] == "accept_drafts"][0]
    assert event["username"] == "labeler"
    assert [b["source"] for b in event["before"]] == ["model", "model"]
    assert sorted(b["source"] for b in event["after"]) == ["human", "model"]


def test_drafts_rejected_are_deleted(db, users, image, classes):
    put_drafts(db, image, [box(classes["cat"], 10, 10, 60, 60, score=0.3),
                           box(classes["bird"], 70, 10, 90, 30, score=0.2)])
    updated = annotations.reject_drafts(db, users["labeler"], image["id"], None, 0)
    assert updated["version"] == 1
    assert annotations.get_boxes(db, image["id"]) == []
    assert [e["kind"] for e in annotations.history(db, image["id"])] == ["status", "reject_drafts"]


def test_draft_actions_check_version_ids_and_role(db, users, image, classes):
    put_drafts(db, image, [box(classes["cat"], 10, 10, 60, 60, score=0.5)])
    draft_id = annotations.drafts(db, image["id"])[0]["id"]
    with pytest.raises(PermissionError):
        annotations.accept_drafts(db, users["viewer"], image["id"], [draft_id], 0)
    with pytest.raises(Conflict):
        annotations.accept_drafts(db, users["labeler"], image["id"], [draft_id], 3)
    with pytest.raises(Invalid, match="not model drafts"):
        annotations.accept_drafts(db, users["labeler"], image["id"], [draft_id + 100], 0)
    assert annotations.drafts(db, image["id"])[0]["id"] == draft_id


def test_open_drafts_block_submit_until_accepted(db, users, image, classes):
    put_drafts(db, image, [box(classes["cat"], 10, 10, 60, 60, score=0.5)])
    with pytest.raises(Invalid, match="1 model drafts are still open"):
        labeling.submit(db, users["labeler"], image["id"], None, 0)
    updated = annotations.accept_drafts(db, users["labeler"], image["id"], None, 0)
    assert labeling.submit(db, users["labeler"], image["id"], None, updated["version"])["status"] == "labeled"


def test_drawing_on_a_no_objects_image_clears_the_flag(db, users, image, classes):
    marked = labeling.mark_no_objects(db, users["labeler"], image["id"], 0)
    saved = annotations.save_boxes(db, users["labeler"], image["id"],
                                   [box(classes["cat"], 1, 1, 9, 9)], marked["version"])
    assert saved["no_objects"] == 0


def test_copy_boxes_scales_them_to_the_other_image():
    source, target = {"width": 200, "height": 100}, {"width": 400, "height": 300}
    copied = annotations.scaled_copy([box(3, 10, 10, 50, 20, source="model", score=0.9)], source, target)
    assert copied == [{"label_id": 3, "xmin": 20.0, "ymin": 30.0, "xmax": 100.0, "ymax": 60.0,
                       "source": "human", "score": None, "difficult": 0, "truncated": 0}]


def test_unchanged_save_records_no_box_event(db, users, image, classes):
    saved = annotations.save_boxes(db, users["labeler"], image["id"], [box(classes["cat"], 1, 1, 9, 9)], 0)
    annotations.save_boxes(db, users["labeler"], image["id"],
                           annotations.get_boxes(db, image["id"]), saved["version"])
    assert [e["kind"] for e in annotations.history(db, image["id"])] == ["status", "boxes"]


def test_history_table_reads_like_sentences(db, users, image, project, classes):
    labeling.assign(db, users["admin"], project["id"], [image["id"]], users["labeler"]["id"])
    saved = annotations.save_boxes(db, users["labeler"], image["id"], [box(classes["cat"], 1, 1, 9, 9)], 0)
    labeling.skip(db, users["labeler"], image["id"], saved["version"], "blurred")
    rows = annotations.history_table(db, image["id"])
    assert [(r["who"], r["change"], r["details"]) for r in rows] == [
        ("labeler", "status", "in_progress → skipped (blurred)"),
        ("labeler", "status", "new → in_progress"),
        ("labeler", "boxes", "0 → 1 boxes"),
        ("admin", "assign", "assigned to labeler")]


def test_edit_box_relabels_accepts_and_deletes_without_touching_the_input():
    boxes = [box(1, 0, 0, 10, 10, source="model", score=0.8), box(2, 5, 5, 20, 20, source="human", score=None)]
    assert annotations.edit_box(boxes, 0, label_id=3)[0] == box(3, 0, 0, 10, 10, source="human", score=None)
    assert annotations.edit_box(boxes, 0, accept=True)[0] == box(1, 0, 0, 10, 10, source="human", score=None)
    assert annotations.edit_box(boxes, 1, delete=True) == boxes[:1]
    assert annotations.draft_count(boxes) == 1 and boxes[0]["source"] == "model"
    with pytest.raises(Invalid, match="there is no box 3"):
        annotations.edit_box(boxes, 2, delete=True)


def test_difficult_and_truncated_flags_are_edited_saved_and_in_the_history(db, admin, project, image, classes):
    annotations.save_boxes(db, admin, image["id"], [box(classes["cat"], 10, 10, 50, 60)], 0)
    edited = annotations.edit_box(annotations.get_boxes(db, image["id"]), 0, difficult=True)
    assert edited[0]["difficult"] == 1 and edited[0]["truncated"] == 0
    annotations.save_boxes(db, admin, image["id"], edited, 1)
    stored = annotations.get_boxes(db, image["id"])
    assert (stored[0]["difficult"], stored[0]["truncated"]) == (1, 0)
    latest = annotations.history(db, image["id"])[0]
    assert latest["kind"] == "boxes"
    assert "difficult" not in latest["before"][0] and latest["after"][0]["difficult"] == 1
    cleared = annotations.edit_box(stored, 0, difficult=False, truncated=True)
    assert (cleared[0]["difficult"], cleared[0]["truncated"]) == (0, 1)
    rows = annotations.box_table(cleared, projects.list_labels(db, project["id"]))
    assert (rows[0]["difficult"], rows[0]["truncated"]) == (False, True)
