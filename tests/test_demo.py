import io
import random

import numpy as np
from PIL import Image

from backend import annotations, demo, images, projects


def test_demo_boxes_frame_the_drawn_shapes_exactly(db, admin):
    project = demo.create_demo_project(db, admin, count=12)
    labeled = images.list_images(db, project["id"], status="labeled")
    assert len(labeled) == 9
    assert len(images.list_images(db, project["id"], status="new")) == 3
    background_inside = []
    for image in labeled:
        pixels = np.asarray(Image.open(io.BytesIO(images.read_image_bytes(image))).convert("RGB"), dtype=int)
        for box in annotations.get_boxes(db, image["id"]):
            x0, y0, x1, y1 = (int(box[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert 0 <= x0 < x1 <= image["width"] and 0 <= y0 < y1 <= image["height"]
            centre = pixels[(y0 + y1) // 2, (x0 + x1) // 2]
            outside = pixels[max(0, y0 - 3), (x0 + x1) // 2] if y0 >= 3 else pixels[min(y1 + 2, image["height"] - 1), (x0 + x1) // 2]
            background_inside.append(np.abs(centre - outside).sum())
    # the shape's fill differs clearly from the background right outside its box
    assert np.median(background_inside) > 60


def test_demo_is_deterministic():
    a = demo.render_scene(random.Random(3))
    b = demo.render_scene(random.Random(3))
    assert a == b
    assert all(name in demo.CLASSES for name, _ in a[1])


def test_demo_classes(db, admin):
    project = demo.create_demo_project(db, admin, name="d2", count=4)
    assert [label["name"] for label in projects.list_labels(db, project["id"])] == list(demo.CLASSES)
