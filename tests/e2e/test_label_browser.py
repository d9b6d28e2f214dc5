"""Two people label one project in two real browsers (Debian's Chromium through Playwright):
boxes drawn with the mouse land in SQLite at the right pixels, and leases keep them apart."""
from __future__ import annotations

import re

import pytest

from backend import annotations, auth, images, projects
from tests.e2e.browser import OPEN_PAGES, TIMEOUT_MS, fill_login, playwright_api, wait_idle
from tests.helpers import image_bytes

pytestmark = pytest.mark.e2e
IMAGE_SIZE = (800, 600)   # shown on a 960×720 canvas: 1 image pixel = 1.2 canvas pixels

@pytest.fixture
def stocked(db, admin):
    """Two labelers, the pets project and three 800×600 images, made through the backend."""
    for name in ("ann", "ben"):
        auth.add_user(db, admin, name, f"{name}-password", "labeler")
    project = projects.create_project(db, admin, "pets", ["cat", "dog", "bird"])
    report = images.ingest(db, admin, project["id"], [
        (f"photo{i}.png", image_bytes(IMAGE_SIZE, color=(40 * i, 120, 200), fmt="PNG"))
        for i in range(3)])
    return {"project": project, "image_ids": [item.image_id for item in report.items]}


@pytest.fixture
def app_url(stocked, app_server):
    return app_server


def log_in(browser, url: str, username: str):
    context = browser.new_context(viewport={"width": 1800, "height": 1300})
    OPEN_PAGES.append(context)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(url)
    return fill_login(page, username)


def header(page, image_id: int):
    return page.get_by_text(re.compile(rf"^#{image_id} · photo\d\.png · 800×600 px"))


def draw(page, start: tuple[float, float], end: tuple[float, float]) -> tuple[float, ...]:
    """Drag on the canvas from `start` to `end` (canvas pixels). The mouse goes to whole screen
    pixels; returns the canvas corners it really used (x0, y0, x1, y1)."""
    surface = page.locator("[data-testid=stBidiComponentIsolated] canvas.upper-canvas")
    surface.wait_for()
    origin = surface.bounding_box()
    x0, y0 = round(origin["x"] + start[0]), round(origin["y"] + start[1])
    x1, y1 = round(origin["x"] + end[0]), round(origin["y"] + end[1])
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) // 2, (y0 + y1) // 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    return x0 - origin["x"], y0 - origin["y"], x1 - origin["x"], y1 - origin["y"]


def choose(page, label: str, option: str) -> None:
    """Pick an option of a selectbox with the keyboard (type to filter, Enter)."""
    page.get_by_label(label, exact=True).click()
    page.keyboard.type(option)
    page.keyboard.press("Enter")
    wait_idle(page)
    playwright_api.expect(page.get_by_label(label, exact=True)).to_have_value(option,
                                                                             timeout=TIMEOUT_MS)


@pytest.mark.slow
def test_two_labelers_in_two_browsers(db, stocked, app_url, browser):
    first_image, second_image = stocked["image_ids"][:2]
    classes = {label["name"]: label["id"] for label in projects.list_labels(db, stocked["project"]["id"])}

    ann = log_in(browser, app_url, "ann")
    ann.get_by_role("button", name="Next image to label").click()
    header(ann, first_image).wait_for()
    assert images.get_image(db, first_image)["lease_user_id"] == auth.get_user(db, "ann")["id"]

    # Two boxes in class "cat"; canvas pixels are 1.2 × image pixels.
    drawn = [draw(ann, (120, 96), (360, 336))]
    ann.get_by_text("unsaved changes").wait_for()
    wait_idle(ann)
    drawn.append(draw(ann, (480, 240), (840, 600)))
    wait_idle(ann)
    ann.get_by_text("Boxes (2, in image pixels)").wait_for()

    # Box 2 becomes a dog through the box editor: Tab twice selects it.
    for number in (1, 2):
        ann.keyboard.press("Tab")
        ann.get_by_text(re.compile(rf"^Box {number} · cat$")).wait_for()
        wait_idle(ann)
    choose(ann, "Class of this box", "dog")
    ann.get_by_text("unsaved changes").wait_for()
    ann.get_by_role("button", name=re.compile(r"^Save")).click()
    ann.get_by_text("Saved").first.wait_for()
    wait_idle(ann)

    stored = sorted(annotations.get_boxes(db, first_image), key=lambda b: b["xmin"])
    assert [b["label_id"] for b in stored] == [classes["cat"], classes["dog"]]
    # Where the mouse went, in image pixels: about (100, 80, 300, 280) and (400, 200, 700, 500).
    for box, corners in zip(stored, drawn):
        got = (box["xmin"], box["ymin"], box["xmax"], box["ymax"])
        assert got == pytest.approx([c / 1.2 for c in corners], abs=0.5), (got, corners)
        assert got == pytest.approx([c / 1.2 for c in (120, 96, 360, 336)] if box is stored[0]
                                    else [c / 1.2 for c in (480, 240, 840, 600)], abs=1.0)
    assert images.get_image(db, first_image)["version"] == 1

    # After a reload the same boxes come back from SQLite onto the canvas.
    ann.reload()
    ann.get_by_text("Signed in as ann").wait_for()  # the session cookie keeps the login
    wait_idle(ann)
    # Her own unfinished image comes after new ones, unless she asks for it first.
    ann.get_by_text("My unfinished images first").click()
    wait_idle(ann)
    ann.get_by_role("button", name="Next image to label").click()
    header(ann, first_image).wait_for()
    ann.get_by_text("Boxes (2, in image pixels)").wait_for()
    wait_idle(ann)
    assert images.get_image(db, first_image)["version"] == 1  # opening it changed nothing

    # A second labeler in another browser sees the lease and is given another image.
    ben = log_in(browser, app_url, "ben")
    ben.get_by_placeholder("Image #").fill(str(first_image))
    ben.get_by_placeholder("Image #").press("Enter")
    wait_idle(ben)
    ben.get_by_role("button", name="Go").click()
    ben.get_by_text(re.compile(r"This image is leased by ann until \d\d:\d\d:\d\d")).wait_for()
    wait_idle(ben)
    ben.get_by_role("button", name="Next image to label").click()
    header(ben, second_image).wait_for()
    assert images.get_image(db, second_image)["lease_user_id"] == auth.get_user(db, "ben")["id"]
    assert images.get_image(db, first_image)["lease_user_id"] == auth.get_user(db, "ann")["id"]
    assert len(annotations.get_boxes(db, first_image)) == 2
