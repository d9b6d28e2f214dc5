"""What browser tests share: Debian's chromium, its flags, and waiting for Streamlit."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("BOXWISE_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags chromium keeps dialling hosts this machine cannot reach.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000
# Browser contexts a test opened; the browser fixture screenshots their pages at the end.
OPEN_PAGES: list = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_idle(page) -> None:
    """Until Streamlit has finished the rerun the last action started."""
    app = "[data-testid=stApp][data-test-script-state={}]"
    for _ in range(2):  # a run that ends in st.rerun() starts another one at once
        try:
            page.locator(app.format("running")).wait_for(timeout=1500)
        except playwright_api.TimeoutError:
            pass
        page.locator(app.format("notRunning")).wait_for()


def signed_in_page(browser, url: str, username: str, link: str):
    """A new 1400×1100 page of the app at `url`, logged in as `username` (password
    `<name>-password`), on the sidebar page `link`; its context is screenshotted at the end."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    OPEN_PAGES.append(context)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(url)
    page.get_by_role("textbox", name="User name").fill(username)
    page.get_by_role("textbox", name="Password", exact=True).fill(f"{username}-password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text(f"Signed in as {username}").wait_for()
    page.get_by_role("link", name=link).click()
    return page


def fill_login(page, username: str):
    """The app's login form, then the Label page."""
    page.get_by_role("textbox", name="User name").fill(username)
    page.get_by_role("textbox", name="Password", exact=True).fill(f"{username}-password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text(f"Signed in as {username}").wait_for()
    page.get_by_role("link", name="Label").click()
    page.get_by_role("button", name="Next image to label").wait_for()
    return page


# The Label page (tests/e2e/test_label_*_browser.py).
SURFACE = "[data-testid=stBidiComponentIsolated] canvas.upper-canvas"


def boxes_heading(page, count: int):
    return page.get_by_text(f"Boxes ({count}, in image pixels)")


def open_label_page(browser, url: str):
    """ann, signed in, on the Label page of a browser window wide enough for the 960-px canvas."""
    context = browser.new_context(viewport={"width": 1800, "height": 1400})
    OPEN_PAGES.append(context)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(url)
    return fill_login(page, "ann")


def press(page, key: str, shows) -> None:
    """Press `key` and wait until `shows` (a locator) appears and the rerun is over."""
    page.keyboard.press(key)
    shows.wait_for()
    wait_idle(page)


def drag(page, start, end, *, alt: bool = False):
    origin = page.locator(SURFACE).bounding_box()
    x0, y0 = round(origin["x"] + start[0]), round(origin["y"] + start[1])
    x1, y1 = round(origin["x"] + end[0]), round(origin["y"] + end[1])
    if alt:
        page.keyboard.down("Alt")
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    if alt:
        page.keyboard.up("Alt")
    return x0 - origin["x"], y0 - origin["y"], x1 - origin["x"], y1 - origin["y"]
