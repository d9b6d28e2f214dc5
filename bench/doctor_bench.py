"""The config doctor's cost: `python bench/doctor_bench.py` (one command).

For N generated boxes on the `zoo_gpu` template (320×320 input, 12,804 anchors):
- best anchor IoU per box, `anchor_coverage.best_iou` (nearest cell centre per level and
  shape) against the baseline of the same run, the brute-force maximum over every anchor of
  `training.anchors.generate_anchors` (in chunks of 1,000 boxes), and the largest difference;
- the whole `config_doctor.examine` on those boxes (every check and the candidate search,
  boxes already read), on a config whose anchors miss most of them so the search runs.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend import config_doctor
from backend.anchor_coverage import AnchorGrid, best_iou
from backend.training.templates import template_text


def brute_force(boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    out = []
    area_a = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    for start in range(0, len(boxes), 1000):
        b = boxes[start:start + 1000, None, :]
        inter = (np.clip(np.minimum(b[..., 2], anchors[:, 2]) - np.maximum(b[..., 0], anchors[:, 0]), 0, None)
                 * np.clip(np.minimum(b[..., 3], anchors[:, 3]) - np.maximum(b[..., 1], anchors[:, 1]), 0, None))
        area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
        out.append((inter / (area_b + area_a - inter)).max(axis=1))
    return np.concatenate(out)


def generated(n: int, rng: np.random.Generator) -> config_doctor.DatasetBoxes:
    """n boxes of 4–120 px (at 320 px) on n / 4 images of 640×480, 80 % of images in train."""
    images = max(1, n // 4)
    image = rng.integers(0, images, n)
    centres = rng.uniform(0.05, 0.95, (n, 2))
    sides = rng.uniform(4, 120, (n, 2)) / 320
    boxes = np.clip(np.concatenate([centres - sides / 2, centres + sides / 2], axis=1), 0, 1)
    split = np.where(rng.uniform(0, 1, images) < 0.8, "train", "val").astype(object)
    return config_doctor.DatasetBoxes({1: "a", 2: "b"}, boxes, rng.integers(1, 3, n), image,
                                      np.tile([480.0, 640.0], (images, 1)), split)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--brute-max", type=int, default=10000, help="largest N for the brute-force baseline")
    args = parser.parse_args()
    from backend.training.anchors import AnchorSpec, generate_anchors

    anchors = generate_anchors(320, 320, AnchorSpec()).astype(np.float64) * 320
    grid = AnchorGrid(320, 320)
    text = template_text("zoo_gpu")
    rng = np.random.default_rng(0)
    print(f"{len(anchors)} anchors at 320×320")
    print("| boxes | best_iou s | brute force s | brute / best_iou | max abs difference | examine s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        data = generated(n, rng)
        px = data.boxes * 320
        started = time.perf_counter()
        fast = best_iou(px, grid)
        fast_s = time.perf_counter() - started
        brute_s = diff = None
        if n <= args.brute_max:
            started = time.perf_counter()
            slow = brute_force(px, anchors)
            brute_s = time.perf_counter() - started
            diff = float(np.abs(fast - slow).max())
        started = time.perf_counter()
        report = config_doctor.examine(text, None, data=data)
        examine_s = time.perf_counter() - started
        checks = ",".join(f.check for f in report.findings)
        print(f"| {n:,} | {fast_s:.4f} | {'—' if brute_s is None else f'{brute_s:.3f}'} | "
              f"{'—' if brute_s is None else f'{brute_s / fast_s:.0f}×'} | "
              f"{'—' if diff is None else f'{diff:.1e}'} | {examine_s:.2f} ({checks}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
