"""Canvas ↔ image coordinates: the one place boxes cross between the label page's canvas and
pixels of the stored image.

The label page shows an image on a canvas of `canvas_width × canvas_height` CSS pixels and
gives the canvas a display copy resized to exactly that size, so the canvas's "contain" fit
is the identity and one image pixel is `scale_x × scale_y` canvas pixels. Boxes in the
database are `xmin, ymin, xmax, ymax` in pixels of the stored image; boxes on the canvas are
`left, top, width, height` in canvas pixels (streamlit-drawable-canvas's `CanvasResult.boxes`).
"""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_WIDTH = 960
DEFAULT_MAX_HEIGHT = 720


@dataclass(frozen=True)
class DisplayFit:
    """How an image of `image_width × image_height` pixels sits on its canvas."""
    image_width: int
    image_height: int
    canvas_width: int
    canvas_height: int

    @property
    def scale_x(self) -> float:
        """Canvas pixels per image pixel, horizontally."""
        return self.canvas_width / self.image_width

    @property
    def scale_y(self) -> float:
        return self.canvas_height / self.image_height


def display_fit(image_width: int, image_height: int, max_width: int = DEFAULT_MAX_WIDTH,
                max_height: int = DEFAULT_MAX_HEIGHT) -> DisplayFit:
    """The largest canvas within `max_width × max_height` that keeps the image's aspect ratio
    (to the nearest canvas pixel). Small images are enlarged so they can be labeled."""
    if image_width < 1 or image_height < 1:
        raise ValueError(f"image size must be positive, not {image_width}×{image_height}")
    scale = min(max_width / image_width, max_height / image_height)
    canvas_width = max(1, min(max_width, round(image_width * scale)))
    canvas_height = max(1, min(max_height, round(image_height * scale)))
    return DisplayFit(image_width, image_height, canvas_width, canvas_height)


def image_to_canvas(box: dict, fit: DisplayFit) -> dict:
    """`{xmin, ymin, xmax, ymax}` in image pixels → `{left, top, width, height}` on the canvas."""
    return {"left": box["xmin"] * fit.scale_x, "top": box["ymin"] * fit.scale_y,
            "width": (box["xmax"] - box["xmin"]) * fit.scale_x,
            "height": (box["ymax"] - box["ymin"]) * fit.scale_y}


def canvas_to_image(rect: dict, fit: DisplayFit) -> dict:
    """`{left, top, width, height}` on the canvas → `{xmin, ymin, xmax, ymax}` in image pixels
    (not clipped: `annotations.clean_boxes` clips to the image when saving)."""
    xmin = rect["left"] / fit.scale_x
    ymin = rect["top"] / fit.scale_y
    return {"xmin": xmin, "ymin": ymin, "xmax": xmin + rect["width"] / fit.scale_x,
            "ymax": ymin + rect["height"] / fit.scale_y}
