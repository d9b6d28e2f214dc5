"""Canvas → SQLite → canvas round trips stay within half a pixel for every image shape."""
from __future__ import annotations

import pytest

from backend import annotations, coordinates, images
from tests.helpers import image_bytes

SIZES = [(4000, 3000), (3000, 4000), (50, 50), (1920, 200)]


def _fabric(rect: dict, digits: int = 4) -> dict:
    """What the canvas sends back: Fabric.js rounds object numbers to NUM_FRACTION_DIGITS (4)."""
    return {k: round(v, digits) for k, v in rect.items()}


@pytest.mark.parametrize("size", SIZES)
def test_display_fit_keeps_aspect_ratio_inside_the_limits(size):
    width, height = size
    fit = coordinates.display_fit(width, height, 960, 720)
    assert fit.canvas_width <= 960 and fit.canvas_height <= 720
    assert fit.canvas_width == 960 or fit.canvas_height == 720
    assert abs(fit.scale_x - fit.scale_y) / fit.scale_x < 0.01


def test_display_fit_exact_values():
    assert coordinates.display_fit(4000, 3000, 960, 720) == coordinates.DisplayFit(4000, 3000, 960, 720)
    assert coordinates.display_fit(3000, 4000, 960, 720) == coordinates.DisplayFit(3000, 4000, 540, 720)
    assert coordinates.display_fit(50, 50, 960, 720) == coordinates.DisplayFit(50, 50, 720, 720)
    assert coordinates.display_fit(1920, 200, 960, 720) == coordinates.DisplayFit(1920, 200, 960, 100)


@pytest.mark.parametrize("size", SIZES)
def test_canvas_to_sqlite_to_canvas_round_trip_within_half_a_pixel(db, admin, project, size):
    width, height = size
    report = images.ingest(db, admin, project["id"],
                           [(f"{width}x{height}.png", image_bytes(size, fmt="PNG"))])
    image = images.get_image(db, report.items[0].image_id)
    fit = coordinates.display_fit(image["width"], image["height"])
    cat = project_label(db, project, "cat")
    # Rectangles drawn on the canvas, in canvas pixels, as the mouse leaves them (any position,
    # fractional after the canvas's own scaling), including one touching the far corner.
    drawn = [
        {"left": 3.0, "top": 2.0, "width": fit.canvas_width * 0.4, "height": fit.canvas_height * 0.3},
        {"left": fit.canvas_width * 0.5 + 0.37, "top": fit.canvas_height * 0.25 + 0.61,
         "width": fit.canvas_width * 0.2 + 0.29, "height": fit.canvas_height * 0.5 + 0.13},
        {"left": fit.canvas_width - 20.0 - 4 * fit.scale_x, "top": fit.canvas_height - 12.0 - 4 * fit.scale_y,
         "width": 20.0 + 4 * fit.scale_x, "height": 12.0 + 4 * fit.scale_y},
    ]
    boxes = [{"label_id": cat, **coordinates.canvas_to_image(_fabric(rect), fit)} for rect in drawn]
    annotations.save_boxes(db, admin, image["id"], boxes, image["version"])

    stored = annotations.get_boxes(db, image["id"])
    assert len(stored) == 3
    for rect, row in zip(drawn, stored):
        expected = coordinates.canvas_to_image(rect, fit)
        for key in ("xmin", "ymin", "xmax", "ymax"):
            assert abs(row[key] - expected[key]) <= 0.5, (key, row[key], expected[key])
        assert 0 <= row["xmin"] < row["xmax"] <= width
        assert 0 <= row["ymin"] < row["ymax"] <= height
        # Back onto the canvas (as the label page preloads it), through the canvas's rounding,
        # and into the database again: the same pixels.
        again = coordinates.canvas_to_image(_fabric(coordinates.image_to_canvas(row, fit)), fit)
        for key in ("xmin", "ymin", "xmax", "ymax"):
            assert abs(again[key] - row[key]) <= 0.5
        back = coordinates.image_to_canvas(row, fit)
        for key in ("left", "top", "width", "height"):
            assert abs(back[key] - rect[key]) * max(1 / fit.scale_x, 1 / fit.scale_y) <= 0.5


@pytest.mark.parametrize("size", SIZES)
def test_image_pixel_corners_map_exactly(size):
    width, height = size
    fit = coordinates.display_fit(width, height)
    whole = {"xmin": 0, "ymin": 0, "xmax": width, "ymax": height}
    rect = coordinates.image_to_canvas(whole, fit)
    assert rect == pytest.approx({"left": 0, "top": 0, "width": fit.canvas_width,
                                  "height": fit.canvas_height})
    assert coordinates.canvas_to_image(rect, fit) == pytest.approx(whole)


def project_label(db, project, name):
    return next(r["id"] for r in db.query("select id from labels where project_id = ? and name = ?",
                                          [project["id"], name]))
