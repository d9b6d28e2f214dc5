"""Test helpers: real images made by Pillow."""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image


def image_bytes(size=(64, 48), color=(200, 30, 30), fmt="JPEG", mode="RGB", **save) -> bytes:
    """A real encoded image made by Pillow."""
    image = Image.new(mode, size, color)
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


APP = str(Path(__file__).resolve().parents[1] / "app.py")


def signed_in(db, username: str, page: str, timeout: float = 120):
    """An AppTest of the app with `username` signed in (password `<name>-password`, as the
    `users` fixture makes them), switched to `page` (e.g. "pages/label.py")."""
    from streamlit.testing.v1 import AppTest

    from backend import auth

    _, token = auth.login(db, username, f"{username}-password")
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.session_state["session_token"] = token  # what the session cookie gives a page load
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def button(at, label: str, *, prefix: bool = False):
    """The first button whose label is `label` (or starts with it, with `prefix=True`)."""
    return next(b for b in at.button if (b.label.startswith(label) if prefix else b.label == label))


# The TF OD API fixtures shared beside the repository (DESIGN.md: ../shared/tfod/).
SHARED_TFOD = Path(__file__).resolve().parents[1].parent / "shared" / "tfod"
