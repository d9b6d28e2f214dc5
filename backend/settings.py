"""Where Boxwise keeps its state and the limits it enforces, read from the environment."""
from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The runtime state directory: `BOXWISE_DATA`, default `./data`. Created on demand."""
    path = Path(os.environ.get("BOXWISE_DATA", "data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_path() -> Path:
    return data_dir() / "boxwise.db"


def subdir(name: str) -> Path:
    """A folder under the data directory (`images`, `exports`, `runs`, `models`, `uploads`)."""
    path = data_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def max_image_pixels() -> int:
    """Decompression-bomb limit in pixels (`BOXWISE_MAX_PIXELS`, default 100 megapixels)."""
    return int(os.environ.get("BOXWISE_MAX_PIXELS", 100_000_000))
