"""Test helpers: real images made by Pillow."""
from __future__ import annotations

import io

from PIL import Image


def image_bytes(size=(64, 48), color=(200, 30, 30), fmt="JPEG", mode="RGB", **save) -> bytes:
    """A real encoded image made by Pillow."""
    image = Image.new(mode, size, color)
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()
