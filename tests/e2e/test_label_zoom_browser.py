"""Labeling a dense image in a real browser (Debian's Chromium through Playwright), as a new
user would: zoom to a corner with the wheel, draw a 12-px box (saved in exact image pixels),
hide a class and keep drawing, select a box on the canvas, Delete it, Ctrl+Z, Ctrl+Enter, N."""
from __future__ import annotations

import re

import pytest

from backend import annotations, auth, images, projects
from tests.e2e.browser import SURFACE, boxes_heading, drag, open_label_page, press, wait_idle
from tests.helpers import image_bytes

pytestmark = pytest.mark.e2e
# 800×600 on a 960×720 canvas: 1.2 canvas px per image px at 1×, 9.6 at 8×.


@pytest.fixture
def dense(db, admin):
    """A labeler, two 800×600 images, the first with 40 "tree" boxes (12×16 px) in a grid."""
    auth.add_user(db, admin, "ann", "ann-password", "labeler")
    project = projects.create_project(db, admin, "forest", ["tree", "shrub"])
    report = images.ingest(db, admin, project["id"], [
        (f"photo{i}.png", image_bytes((800, 600), color=(30 + 40 * i, 120, 60), fmt="PNG"))
        for i in range(2)])
    ids = [item.image_id for item in report.items]
    tree = projects.list_labels(db, project["id"])[0]["id"]
    grid = [{"label_id": tree, "xmin": 20.0 + 60 * (k % 8), "ymin": 20.0 + 70 * (k // 8),
             "xmax": 32.0 + 60 * (k % 8), "ymax": 36.0 + 70 * (k // 8)} for k in range(40)]
    annotations.save_boxes(db, admin, ids[0], grid, 0)
    return {"ids": ids, "labels": {label["name"]: label["id"] for label in projects.list_labels(db, project["id"])}}


# Pixels painted on the canvas's object layer (Fabric's lower canvas; the image is on a canvas
# of its own beneath): the first 50 of them, none when no box is drawn.
PAINTED = """() => {
  const upper = [...document.querySelectorAll('[data-testid=stBidiComponentIsolated]')]
    .map((h) => h.shadowRoot && h.shadowRoot.querySelector('canvas.upper-canvas')).find(Boolean);
  const lower = upper.parentElement.querySelector('canvas.lower-canvas');
  const data = lower.getContext('2d').getImageData(0, 0, lower.width, lower.height).data;
  const marks = [];
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 0) { marks.push(i / 4); if (marks.length > 50) break; }
  }
  return marks;
}"""


@pytest.mark.slow
def test_zoom_draw_hide_select_delete_undo_submit_next(db, dense, app_server, browser):
    first, second = dense["ids"]
    page = open_label_page(browser, app_server)
    page.get_by_role("button", name="Next image to label").click()
    page.get_by_text(re.compile(rf"^#{first} · photo0\.png · 800×600 px")).wait_for()
    boxes_heading(page, 40).wait_for()
    wait_idle(page)
    assert len(page.evaluate(PAINTED)) > 50  # the trees are on it

    # Zoom towards the bottom-right corner with the wheel over it (1 → 8× in six steps, the
    # point under the mouse stays put), then the arrow keys pan into the very corner.
    surface = page.locator(SURFACE)
    origin = surface.bounding_box()
    for zoom in ("1.5×", "2×", "3×", "4×", "6×", "8×"):
        page.mouse.move(origin["x"] + 955, origin["y"] + 715)
        page.mouse.wheel(0, -100)
        page.get_by_text(zoom, exact=True).wait_for()
        wait_idle(page)
    page.get_by_text("View 8×: x 696–796, y 521–596").wait_for()
    page.mouse.move(origin["x"] + 1000, origin["y"] - 50)
    for key in ("ArrowRight", "ArrowDown"):
        page.keyboard.press(key)
        wait_idle(page)
    page.get_by_text("View 8×: x 700–800, y 525–600").wait_for()

    # A 12 × 12 image-pixel box is 115.2 canvas pixels at 8×.
    x0, y0, x1, y1 = drag(page, (200, 300), (315.2, 415.2))
    boxes_heading(page, 41).wait_for()
    wait_idle(page)
    press(page, "s", page.get_by_text("Saved").first)
    stored = annotations.get_boxes(db, first)
    assert len(stored) == 41
    new = max(stored, key=lambda b: b["id"])
    assert new["label_id"] == dense["labels"]["tree"]
    # Exactly the view's origin plus the mouse's canvas position over 9.6 (to Fabric's float).
    expected = (700 + x0 / 9.6, 525 + y0 / 9.6, 700 + x1 / 9.6, 525 + y1 / 9.6)
    assert (new["xmin"], new["ymin"], new["xmax"], new["ymax"]) == \
        pytest.approx(expected, abs=0.11), expected
    assert new["xmax"] - new["xmin"] == pytest.approx(12, abs=0.2)

    # Back to the whole image; hide "tree"; drawing goes on (a "shrub" box, key 2).
    page.get_by_role("button", name="1×").click()
    page.get_by_text("View 1×: x 0–800, y 0–600").wait_for()
    wait_idle(page)
    page.get_by_role("combobox", name="Hide classes").click()
    page.get_by_role("option", name="tree").click()
    page.keyboard.press("Escape")
    wait_idle(page)
    assert page.evaluate(PAINTED) == []  # the trees are off the canvas
    page.locator("h4").first.click()  # the keys go to the page, not the multiselect
    page.keyboard.press("2")
    wait_idle(page)
    drag(page, (600, 120), (700, 220))
    boxes_heading(page, 42).wait_for()
    wait_idle(page)

    # Edit mode; click the shrub box on the canvas: the editor shows it selected.
    page.locator("[data-testid=stBidiComponentIsolated] button[title='Edit']").click()
    page.mouse.click(origin["x"] + 650, origin["y"] + 121)
    page.get_by_text(re.compile(r"^Box 42 · shrub$")).wait_for()
    wait_idle(page)
    press(page, "Delete", boxes_heading(page, 41))
    press(page, "Control+z", boxes_heading(page, 42))
    press(page, "Control+Enter", page.get_by_text("Submitted as labeled").first)
    submitted = images.get_image(db, first)
    assert submitted["status"] == "labeled"
    assert sorted(b["label_id"] for b in annotations.get_boxes(db, first)).count(dense["labels"]["shrub"]) == 1
    assert len(annotations.get_boxes(db, first)) == 42

    page.keyboard.press("n")
    page.get_by_text(re.compile(rf"^#{second} · photo1\.png · 800×600 px")).wait_for()


def test_quick_actions_land_draw_then_n_submit_then_n_save_during_a_rerun_go_on_click(
        db, dense, app_server, browser):
    """What used to be lost: a box drawn right before N, Submit followed by N within 150 ms,
    S pressed while the page is still rerunning, and Go clicked without Enter first."""
    first, second = dense["ids"]
    page = open_label_page(browser, app_server)
    page.get_by_role("button", name="Next image to label").click()
    page.get_by_text(re.compile(rf"^#{first} · ")).wait_for()
    boxes_heading(page, 40).wait_for()
    wait_idle(page)

    # Draw, and N at once (no wait): the box is saved on the image left behind.
    drag(page, (700, 600), (800, 700))
    page.keyboard.press("n")
    page.get_by_text(re.compile(rf"^#{second} · ")).wait_for()
    wait_idle(page)
    assert len(annotations.get_boxes(db, first)) == 41

    # Draw, S while the rerun the box started is still going, then Ctrl+Enter and N 150 ms later.
    drag(page, (100, 100), (200, 200))
    page.wait_for_timeout(50)
    page.keyboard.press("s")
    page.get_by_text("Saved").first.wait_for()
    wait_idle(page)
    assert len(annotations.get_boxes(db, second)) == 1
    page.keyboard.press("Control+Enter")
    page.wait_for_timeout(150)
    page.keyboard.press("n")
    # Nothing new is left, so the own in-progress image comes back.
    page.get_by_text(re.compile(rf"^#{first} · photo0\.png · 800×600 px · in progress")).wait_for()
    wait_idle(page)
    assert images.get_image(db, second)["status"] == "labeled"

    # Go without Enter: type the number, click Go.
    page.get_by_placeholder("Image #").fill(str(second))
    page.get_by_role("button", name="Go").click()
    page.get_by_text(re.compile(rf"^#{second} · photo1\.png · 800×600 px · labeled")).wait_for()
