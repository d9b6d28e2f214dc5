"""Fixtures for format tests: a project with labeled images and human boxes in SQLite."""
from __future__ import annotations

import pytest

from backend import annotations, images
from tests.helpers import image_bytes


def add_image(db, actor, project_id, name, size=(64, 48), color=(200, 30, 30), fmt="JPEG",
              boxes=(), status="labeled", no_objects=False):
    """Ingest a real Pillow image and save `boxes` [(class name, xmin, ymin, xmax, ymax)]."""
    report = images.ingest(db, actor, project_id, [(name, image_bytes(size, color, fmt))])
    image_id = report.items[0].image_id
    assert report.items[0].outcome == "accepted", report.rows()
    label_ids = {r["name"]: r["id"] for r in db.query("select id, name from labels where project_id = ?",
                                                       [project_id])}
    row = images.get_image(db, image_id)
    row = annotations.save_boxes(db, actor, image_id, [
        {"label_id": label_ids[c], "xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1}
        for c, x0, y0, x1, y1 in boxes], row["version"], status=status)
    if no_objects:
        db.execute("update images set no_objects = 1 where id = ?", [image_id])
    return image_id


@pytest.fixture
def labeled(db, admin, project):
    """Six labeled images of three classes in `project`, one negative, one image still new."""
    pid = project["id"]
    ids = {
        "a.jpg": add_image(db, admin, pid, "a.jpg", (64, 48), (250, 0, 0),
                           boxes=[("cat", 1.5, 2.25, 30.5, 40.0), ("dog", 10, 10, 60, 47)]),
        "b.jpg": add_image(db, admin, pid, "b.jpg", (80, 60), (0, 250, 0),
                           boxes=[("cat", 0, 0, 80, 60)]),
        "c.png": add_image(db, admin, pid, "c.png", (50, 40), (0, 0, 250), fmt="PNG",
                           boxes=[("bird", 5, 6, 25, 30), ("cat", 20, 10, 45, 35)], status="reviewed"),
        "d.jpg": add_image(db, admin, pid, "d.jpg", (64, 64), (120, 120, 0),
                           boxes=[("dog", 3, 4, 33, 44)]),
        "e.jpg": add_image(db, admin, pid, "e.jpg", (40, 30), (0, 120, 120),
                           boxes=[("bird", 2, 2, 38, 28)]),
        "neg.jpg": add_image(db, admin, pid, "neg.jpg", (32, 32), (10, 10, 10), no_objects=True),
        "new.jpg": add_image(db, admin, pid, "new.jpg", (32, 32), (90, 10, 200), status="new"),
    }
    return ids
