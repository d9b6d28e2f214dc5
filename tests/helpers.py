"""Test helpers: real images made by Pillow."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

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


# The TF OD API's own zoo configs and label maps, when they lie beside the repository
# (../shared/tfod/, as in CI). They are the OD API's files, so they are not copied in here: the
# conformance tests that read them are skipped in a clone without them.
SHARED_TFOD = Path(__file__).resolve().parents[1].parent / "shared" / "tfod"
needs_shared_tfod = pytest.mark.skipif(not (SHARED_TFOD / "configs").is_dir(),
                                       reason="needs the TF OD API's zoo configs in ../shared/tfod")

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ODAPI_FIXTURES = FIXTURES / "odapi"
# The zoo ssd_mobilenet_v2_fpnlite_320x320 config: the OD API's own file when it is beside the
# repository, else the same model as the OD API's exporter wrote it for the fixtures.
_SHARED_FPNLITE = SHARED_TFOD / "configs" / "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config"
ZOO_FPNLITE_CONFIG = _SHARED_FPNLITE if _SHARED_FPNLITE.is_file() else ODAPI_FIXTURES / "zoo320" / "pipeline.config"
