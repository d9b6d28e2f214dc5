"""The one box-drawing function: boxes with captions on an image, for TFRecord previews,
"extract with boxes" and predictions (pixels, xmin/ymin/xmax/ymax)."""
from __future__ import annotations

import io
from collections.abc import Iterable

from PIL import Image, ImageDraw, ImageFont


def draw_boxes(image: Image.Image, boxes: Iterable[tuple[str, tuple[float, float, float, float], str]]
               ) -> Image.Image:
    """A copy of `image` (RGB) with each `(caption, (xmin, ymin, xmax, ymax) in pixels, colour)`
    drawn: the outline, and the caption on a filled tab above the box (inside it at the top edge)."""
    out = image.convert("RGB")
    if out is image:
        out = out.copy()
    pen = ImageDraw.Draw(out)
    line = max(2, round(min(out.size) / 200))
    font = ImageFont.load_default(size=max(12, round(min(out.size) / 40)))
    for caption, (xmin, ymin, xmax, ymax), color in boxes:
        pen.rectangle([xmin, ymin, xmax, ymax], outline=color, width=line)
        if caption:
            left, top, right, bottom = pen.textbbox((0, 0), caption, font=font)
            tab_y = ymin - (bottom - top) - 4 if ymin - (bottom - top) - 4 >= 0 else ymin
            pen.rectangle([xmin, tab_y, xmin + right - left + 4, tab_y + bottom - top + 4], fill=color)
            pen.text((xmin + 2 - left, tab_y + 2 - top), caption, fill="black", font=font)
    return out


def encode(image: Image.Image, fmt: str) -> bytes:
    """Encode a drawn preview as `fmt` ("jpeg" | "png")."""
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=92)
    return out.getvalue()
