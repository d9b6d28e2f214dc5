"""The demo project: generated pictures of coloured shapes with their boxes, so a newcomer can
try every page (label, review, export, train, predict) without bringing data."""
from __future__ import annotations

import io
import random

import sqlite_utils
from PIL import Image, ImageDraw, ImageFilter

from backend import annotations, images, projects
from backend.db import one

DEMO_PROJECT = "demo-shapes"
DEMO_IMAGES = 60
CLASSES = ("circle", "square", "triangle")
DESCRIPTION = ("generated 320×240 pictures of circles, squares and triangles on noisy "
               "backgrounds; three quarters come labeled, the rest are left for you to box")
SIZE = (320, 240)


def render_scene(rng: random.Random, size=SIZE, max_objects: int = 3) -> tuple[bytes, list[tuple[str, tuple]]]:
    """One JPEG and its objects as (class name, (xmin, ymin, xmax, ymax)) in pixels."""
    width, height = size
    top = tuple(rng.randrange(60, 200) for _ in range(3))
    bottom = tuple(rng.randrange(60, 200) for _ in range(3))
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):  # a vertical gradient, so the background is not flat
        t = y / max(1, height - 1)
        draw.line([(0, y), (width, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    for _ in range(40):  # clutter that is not an object
        x, y = rng.randrange(width), rng.randrange(height)
        draw.line([(x, y), (x + rng.randrange(-30, 30), y + rng.randrange(-30, 30))],
                  fill=tuple(rng.randrange(256) for _ in range(3)), width=1)
    objects: list[tuple[str, tuple]] = []
    for _ in range(rng.randint(1, max_objects)):
        side = rng.randrange(min(size) // 6, min(size) // 2)
        for _attempt in range(20):
            x0, y0 = rng.randrange(0, width - side), rng.randrange(0, height - side)
            box = (x0, y0, x0 + side, y0 + side)
            if all(_overlap(box, other) < 0.1 for _, other in objects):
                break
        else:
            continue
        name = rng.choice(CLASSES)
        color = tuple(rng.choice((rng.randrange(0, 60), rng.randrange(200, 256))) for _ in range(3))
        if name == "circle":
            draw.ellipse(box, fill=color)
        elif name == "square":
            draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=color)
        else:
            draw.polygon([(box[0], box[3] - 1), (box[2] - 1, box[3] - 1),
                          ((box[0] + box[2]) / 2, box[1])], fill=color)
        objects.append((name, box))
    image = image.filter(ImageFilter.GaussianBlur(0.6))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue(), objects


def _overlap(a: tuple, b: tuple) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller else 0.0


def create_demo_project(db: sqlite_utils.Database, actor: dict, name: str = DEMO_PROJECT,
                        count: int = DEMO_IMAGES, seed: int = 7,
                        on_progress=None) -> dict:
    """Create `name` with generated images; three quarters labeled with exact boxes."""
    project = projects.create_project(db, actor, name, list(CLASSES), description=DESCRIPTION)
    label_ids = {row["name"]: row["id"] for row in projects.list_labels(db, project["id"])}
    rng = random.Random(seed)
    scenes = [render_scene(rng) for _ in range(count)]
    report = images.ingest(db, actor, project["id"],
                           ((f"shapes-{i:03d}.jpg", data) for i, (data, _) in enumerate(scenes)),
                           total=count, on_progress=on_progress)
    labeled = int(count * 0.75)
    for index, (item, (_, objects)) in enumerate(zip(report.items, scenes)):
        if index >= labeled or item.outcome != "accepted":
            continue
        boxes = [{"label_id": label_ids[cls], "xmin": b[0], "ymin": b[1], "xmax": b[2], "ymax": b[3]}
                 for cls, b in objects]
        version = one(db, "select version from images where id = ?", [item.image_id])["version"]
        annotations.save_boxes(db, actor, item.image_id, boxes, version, status="labeled")
    return projects.get_project(db, project["id"])
