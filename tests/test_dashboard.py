"""Progress figures from a small, fully known labeling history."""
from __future__ import annotations

import datetime as dt

import pytest

from backend import annotations, dashboard, db as database, images, labeling
from tests.helpers import image_bytes


@pytest.fixture
def history(db, users, project):
    """Five images: two labeled by the labeler (2 and 1 boxes), one of them approved and one
    rejected; one negative by the reviewer; one skipped; one new. Returns the image ids."""
    report = images.ingest(db, users["admin"], project["id"], [
        (f"i{i}.png", image_bytes((100, 100), color=(i * 30, 0, 0), fmt="PNG")) for i in range(5)])
    ids = [item.image_id for item in report.items]
    cls = {r["name"]: r["id"] for r in db.query("select id, name from labels where project_id = ?",
                                                [project["id"]])}
    box = lambda c, x: {"label_id": cls[c], "xmin": x, "ymin": 10, "xmax": x + 20, "ymax": 40}  # noqa: E731
    labeler, reviewer = users["labeler"], users["reviewer"]
    first = labeling.submit(db, labeler, ids[0], [box("cat", 0), box("dog", 50)], 0)
    second = labeling.submit(db, labeler, ids[1], [box("cat", 10)], 0)
    labeling.approve(db, reviewer, ids[0], first["version"])
    labeling.reject(db, reviewer, ids[1], second["version"], "missed a dog")
    labeling.mark_no_objects(db, reviewer, ids[2], 0)
    labeling.skip(db, labeler, ids[3], 0, "blurred")
    return ids


def test_counts_by_status_include_zeros(db, project, history):
    assert dashboard.counts_by_status(db, project["id"]) == {
        "new": 1, "in_progress": 0, "labeled": 1, "reviewed": 1, "rejected": 1, "skipped": 1}


def test_throughput_per_labeler_and_day(db, project, history):
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    assert dashboard.throughput(db, project["id"]) == [
        {"day": today, "username": "labeler", "images": 2, "boxes": 3},
        {"day": today, "username": "reviewer", "images": 1, "boxes": 0},
    ]
    assert dashboard.throughput(db, project["id"], days=1, until=database.now() + 3 * 86400) == []


def test_class_balance_counts_human_boxes_and_images(db, project, history):
    assert [(r["class"], r["boxes"], r["images"]) for r in dashboard.class_balance(db, project["id"])] == \
        [("cat", 2, 2), ("dog", 1, 1), ("bird", 0, 0)]


def test_boxes_per_image_histogram(db, project, history):
    # Done images: i0 (reviewed, 2 boxes) and i2 (labeled, no objects).
    assert dashboard.boxes_per_image(db, project["id"]) == [{"boxes": 0, "images": 1},
                                                            {"boxes": 2, "images": 1}]
    assert dashboard.boxes_per_image(db, project["id"], ("rejected",)) == [{"boxes": 1, "images": 1}]


def test_review_rejection_rate(db, project, history):
    assert dashboard.review_summary(db, project["id"]) == {
        "approved": 1, "rejected": 1, "rejection_rate": 0.5,
        "per_labeler": [{"username": "labeler", "approved": 1, "rejected": 1, "rejection_rate": 0.5}]}


def test_summary_and_drafts(db, project, history):
    db["annotations"].insert({"image_id": history[4], "label_id": 1, "xmin": 1, "ymin": 1, "xmax": 9,
                              "ymax": 9, "source": "model", "score": 0.7})
    assert dashboard.summary(db, project["id"]) == {"images": 5, "done": 2, "done_share": 0.4,
                                                    "boxes": 3, "drafts": 1}


def test_empty_project_has_no_rates(db, project):
    assert dashboard.review_summary(db, project["id"])["rejection_rate"] is None
    assert dashboard.summary(db, project["id"])["done_share"] is None
    assert dashboard.boxes_per_image(db, project["id"]) == []
    assert annotations.get_boxes(db, 1) == []
