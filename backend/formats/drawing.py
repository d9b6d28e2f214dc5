"""Boxes drawn on images, for previews and "extract with boxes" (pixels, xmin/ymin/xmax/ymax)."""
from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

from backend.projects import PALETTE


def draw_boxes(image: Image.Image, boxes: list[tuple[str, tuple[float, float, float, float]]],
               colors: dict[str, str] | None = None) -> Image.Image:
    """A copy of `image` (RGB) with each `(caption, (xmin, ymin, xmax, ymax) in pixels)` drawn."""
    out = image.convert("RGB").copy()
    pen = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    width = max(1, round(max(out.size) / 300))
    names = sorted({caption for caption, _ in boxes})
    for caption, (xmin, ymin, xmax, ymax) in boxes:
        color = (colors or {}).get(caption) or PALETTE[names.index(caption) % len(PALETTE)]
        pen.rectangle([xmin, ymin, xmax, ymax], outline=color, width=width)
        if caption:
            left, top, right, bottom = pen.textbbox((xmin, ymin), caption, font=font)
            y = ymin - (bottom - top) - 2 if ymin - (bottom - top) - 2 >= 0 else ymin
            pen.rectangle([xmin, y, xmin + (right - left) + 4, y + (bottom - top) + 2], fill=color)
            pen.text((xmin + 2, y), caption, fill="black", font=font)
    return out


def encode(image: Image.Image, fmt: str) -> bytes:
    """Encode a drawn preview as `fmt` ("jpeg" | "png")."""
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=92)
    return out.getvalue()
