"""Canvas ↔ image coordinates: the one place boxes cross between the label page's canvas and
pixels of the stored image.

The label page shows an image on a canvas of `canvas_width × canvas_height` CSS pixels and
gives the canvas a display copy resized to exactly that size, so the canvas's "contain" fit
is the identity and one image pixel is `scale_x × scale_y` canvas pixels. Zoomed in
(`zoom` > 1), the canvas keeps its size and shows the image region that starts at image pixel
`(left, top)` and is `view_width × view_height` image pixels: the canvas background is that
region resized to the canvas (`canvas.display_image`), and a canvas point `(x, y)` is image
point `(left + x / scale_x, top + y / scale_y)`. Boxes in the
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
    zoom: float = 1.0
    left: float = 0.0
    top: float = 0.0

    @property
    def scale_x(self) -> float:
        """Canvas pixels per image pixel, horizontally."""
        return self.canvas_width / self.image_width * self.zoom

    @property
    def scale_y(self) -> float:
        return self.canvas_height / self.image_height * self.zoom

    @property
    def view_width(self) -> float:
        """How many image pixels the canvas shows across."""
        return self.image_width / self.zoom

    @property
    def view_height(self) -> float:
        return self.image_height / self.zoom

    def shows(self, box: dict) -> bool:
        """Whether any part of `box` (`xmin, ymin, xmax, ymax` image pixels) is in the view."""
        return (box["xmax"] > self.left and box["xmin"] < self.left + self.view_width
                and box["ymax"] > self.top and box["ymin"] < self.top + self.view_height)


ZOOMS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


def zoomed(fit: DisplayFit, zoom: float, center_x: float, center_y: float) -> DisplayFit:
    """The view at `zoom` (1–8) centred as near `(center_x, center_y)` (image pixels) as the
    image's edges allow: the view never leaves the image."""
    if not 1.0 <= zoom <= ZOOMS[-1]:
        raise ValueError(f"zoom must be between 1 and {ZOOMS[-1]:g}, not {zoom:g}")
    view_width, view_height = fit.image_width / zoom, fit.image_height / zoom
    left = min(max(center_x - view_width / 2, 0.0), fit.image_width - view_width)
    top = min(max(center_y - view_height / 2, 0.0), fit.image_height - view_height)
    return DisplayFit(fit.image_width, fit.image_height, fit.canvas_width, fit.canvas_height,
                      float(zoom), left, top)


def view_center(fit: DisplayFit) -> tuple[float, float]:
    """The image point at the middle of the view."""
    return fit.left + fit.view_width / 2, fit.top + fit.view_height / 2


def step_zoom(zoom: float, steps: int) -> float:
    """The zoom `steps` places up (or down, negative) the `ZOOMS` ladder from `zoom`."""
    here = min(range(len(ZOOMS)), key=lambda i: abs(ZOOMS[i] - zoom))
    return ZOOMS[min(max(here + steps, 0), len(ZOOMS) - 1)]


def zoom_at(fit: DisplayFit, zoom: float, canvas_x: float, canvas_y: float) -> DisplayFit:
    """Zoom to `zoom` keeping the image point under canvas point `(canvas_x, canvas_y)` (the
    mouse) where it is on the canvas, as far as the image's edges allow."""
    image_x, image_y = fit.left + canvas_x / fit.scale_x, fit.top + canvas_y / fit.scale_y
    view_width, view_height = fit.image_width / zoom, fit.image_height / zoom
    center_x = image_x - canvas_x / fit.canvas_width * view_width + view_width / 2
    center_y = image_y - canvas_y / fit.canvas_height * view_height + view_height / 2
    return zoomed(fit, zoom, center_x, center_y)


def panned(fit: DisplayFit, dx: float, dy: float) -> DisplayFit:
    """The view moved by `dx, dy` canvas pixels (positive: towards the right/bottom of the
    image), stopped at the image's edges."""
    center_x, center_y = view_center(fit)
    return zoomed(fit, fit.zoom, center_x + dx / fit.scale_x, center_y + dy / fit.scale_y)


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
    return {"left": (box["xmin"] - fit.left) * fit.scale_x, "top": (box["ymin"] - fit.top) * fit.scale_y,
            "width": (box["xmax"] - box["xmin"]) * fit.scale_x,
            "height": (box["ymax"] - box["ymin"]) * fit.scale_y}


def canvas_to_image(rect: dict, fit: DisplayFit) -> dict:
    """`{left, top, width, height}` on the canvas → `{xmin, ymin, xmax, ymax}` in image pixels
    (not clipped: `annotations.clean_boxes` clips to the image when saving)."""
    xmin = fit.left + rect["left"] / fit.scale_x
    ymin = fit.top + rect["top"] / fit.scale_y
    return {"xmin": xmin, "ymin": ymin, "xmax": xmin + rect["width"] / fit.scale_x,
            "ymax": ymin + rect["height"] / fit.scale_y}
