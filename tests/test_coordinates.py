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


def test_zoomed_view_converts_canvas_and_image_pixels_exactly():
    """800×600 on a 960×720 canvas: 1.2 canvas px per image px at 1×, 9.6 at 8×."""
    fit = coordinates.display_fit(800, 600)
    corner = coordinates.zoomed(fit, 8, 10_000, 10_000)  # asked past the corner: stops at it
    assert (corner.left, corner.top, corner.view_width, corner.view_height) == (700.0, 525.0, 100.0, 75.0)
    assert (corner.scale_x, corner.scale_y) == (9.6, 9.6)
    box = coordinates.canvas_to_image({"left": 96.0, "top": 192.0, "width": 115.2, "height": 115.2}, corner)
    assert box == pytest.approx({"xmin": 710.0, "ymin": 545.0, "xmax": 722.0, "ymax": 557.0}, abs=1e-9)
    assert coordinates.image_to_canvas(box, corner) == \
        pytest.approx({"left": 96.0, "top": 192.0, "width": 115.2, "height": 115.2}, abs=1e-9)
    assert corner.shows({"xmin": 690, "ymin": 500, "xmax": 701, "ymax": 526})
    assert not corner.shows({"xmin": 690, "ymin": 500, "xmax": 700, "ymax": 600})  # ends at the edge


def test_zoom_about_the_mouse_pan_and_the_zoom_ladder():
    fit = coordinates.display_fit(800, 600)
    # The image point under the mouse (canvas 480, 360 = image 400, 300) stays under it.
    two = coordinates.zoom_at(fit, 2, 480, 360)
    assert (two.left, two.top) == (200.0, 150.0)
    four = coordinates.zoom_at(two, 4, 0, 0)  # the view's top-left corner stays put
    assert (four.left, four.top, four.view_width) == (200.0, 150.0, 200.0)
    moved = coordinates.panned(four, 96, -4800)  # 96 canvas px = 20 image px at 4.8 px/px
    assert (moved.left, moved.top) == (220.0, 0.0)  # and no higher than the top edge
    assert coordinates.view_center(moved) == (320.0, 75.0)
    assert [coordinates.step_zoom(1, 1), coordinates.step_zoom(8, 1), coordinates.step_zoom(3, -2),
            coordinates.step_zoom(1, -1)] == [1.5, 8.0, 1.5, 1.0]
    with pytest.raises(ValueError, match="zoom must be between 1 and 8"):
        coordinates.zoomed(fit, 9, 0, 0)
