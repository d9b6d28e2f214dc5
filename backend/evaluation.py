"""COCO detection metrics through pycocotools, named with the TF OD API's tags.

    coco_metrics(groundtruth, detections, categories)  →  {"DetectionBoxes_Precision/mAP": 0.52, ...}
    evaluate_coco(...)  →  the same metrics and each class's precision-recall curve

Plain data in, plain dict out, so anything (the trainer's evaluation mode, the inference page,
a script) can score predictions against ground truth:

- `groundtruth`: `[{"image_id": str|int, "boxes": [[ymin, xmin, ymax, xmax], ...], "classes": [id, ...]}]`
- `detections`:  `[{"image_id": ..., "boxes": [...], "classes": [...], "scores": [...]}]`
- boxes in any one consistent unit (pixels, or normalised coordinates scaled by `image_sizes`);
  `image_sizes` `{image_id: (height, width)}` turns normalised boxes into pixels, which the
  small/medium/large split (areas 32², 96² pixels) needs.
- `categories`: `[{"id": 1, "name": "cat"}, ...]` (label-map ids ≥ 1).
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

PRECISION = "DetectionBoxes_Precision"
RECALL = "DetectionBoxes_Recall"

# COCOeval.stats order → TF OD API tag.
TAGS = (
    f"{PRECISION}/mAP",
    f"{PRECISION}/mAP@.50IOU",
    f"{PRECISION}/mAP@.75IOU",
    f"{PRECISION}/mAP (small)",
    f"{PRECISION}/mAP (medium)",
    f"{PRECISION}/mAP (large)",
    f"{RECALL}/AR@1",
    f"{RECALL}/AR@10",
    f"{RECALL}/AR@100",
    f"{RECALL}/AR@100 (small)",
    f"{RECALL}/AR@100 (medium)",
    f"{RECALL}/AR@100 (large)",
)


def _pixels(boxes, size) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if size is not None:
        h, w = size
        boxes = boxes * np.array([h, w, h, w], dtype=np.float64)
    return boxes


def _coco_box(yxyx) -> list[float]:
    ymin, xmin, ymax, xmax = (float(v) for v in yxyx)
    return [xmin, ymin, max(xmax - xmin, 0.0), max(ymax - ymin, 0.0)]


@dataclass
class CocoEvaluation:
    """`metrics`: tag → value (see `coco_metrics`). `pr_curves`: class name → interpolated
    precision at the 101 COCO recall points 0.00, 0.01, …, 1.00 (IoU 0.5, all areas, 100
    detections), for every class with ground truth; a point no detection reaches is 0."""
    metrics: dict[str, float]
    pr_curves: dict[str, list[float]] = field(default_factory=dict)


RECALL_POINTS = [round(r / 100, 2) for r in range(101)]


def coco_metrics(groundtruth: Iterable[dict[str, Any]], detections: Iterable[dict[str, Any]],
                 categories: list[dict[str, Any]], image_sizes: dict[Any, tuple[int, int]] | None = None,
                 per_category: bool = False) -> dict[str, float]:
    """TF OD API `coco_detection_metrics`: the 12 COCO numbers under their TF OD API tags, plus
    `DetectionBoxes_Precision/mAP ByCategory/<name>` per class when `per_category`.

    Images with ground truth but no detections count as misses; metrics with no ground truth at
    all are -1, as pycocotools reports them.
    """
    return evaluate_coco(groundtruth, detections, categories, image_sizes, per_category).metrics


def evaluate_coco(groundtruth: Iterable[dict[str, Any]], detections: Iterable[dict[str, Any]],
                  categories: list[dict[str, Any]], image_sizes: dict[Any, tuple[int, int]] | None = None,
                  per_category: bool = False) -> CocoEvaluation:
    """`coco_metrics` and the precision-recall curve of each class, from one COCOeval run."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    image_sizes = image_sizes or {}
    ids: dict[Any, int] = {}
    images, annotations = [], []
    for item in groundtruth:
        key = item["image_id"]
        if key in ids:
            raise ValueError(f"image {key!r} appears twice in the ground truth")
        ids[key] = len(ids) + 1
        size = image_sizes.get(key)
        entry = {"id": ids[key]}
        if size is not None:
            entry.update(height=int(size[0]), width=int(size[1]))
        images.append(entry)
        for box, cls in zip(_pixels(item["boxes"], size), item["classes"]):
            coco = _coco_box(box)
            annotations.append({"id": len(annotations) + 1, "image_id": ids[key], "category_id": int(cls),
                                "bbox": coco, "area": coco[2] * coco[3], "iscrowd": 0})
    results = []
    for item in detections:
        key = item["image_id"]
        if key not in ids:
            raise ValueError(f"detections for image {key!r}, which has no ground truth entry")
        size = image_sizes.get(key)
        for box, cls, score in zip(_pixels(item["boxes"], size), item["classes"], item["scores"]):
            results.append({"image_id": ids[key], "category_id": int(cls), "bbox": _coco_box(box),
                            "score": float(score)})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations,
                  "categories": [{"id": int(c["id"]), "name": str(c.get("name", c["id"]))} for c in categories]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if results:
            dt = gt.loadRes(results)
        else:
            dt = COCO()
            dt.dataset = {"images": images, "annotations": [], "categories": gt.dataset["categories"]}
            dt.createIndex()
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.params.imgIds = sorted(ids.values())
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    metrics = {tag: float(value) for tag, value in zip(TAGS, evaluator.stats)}
    # precision: [T iou thresholds (0.5 first), R recall points, K categories, A areas (all
    # first), M max detections (100 last)]; -1 where a class has no ground truth.
    precision = evaluator.eval["precision"]
    curves = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        name = next((str(c.get("name", cat_id)) for c in categories if int(c["id"]) == cat_id), str(cat_id))
        if per_category:
            values = precision[:, :, k, 0, -1]
            values = values[values > -1]
            metrics[f"{PRECISION}/mAP ByCategory/{name}"] = float(values.mean()) if values.size else -1.0
        curve = precision[0, :, k, 0, -1]
        if (curve > -1).all():
            curves[name] = [round(float(v), 6) for v in curve]
    return CocoEvaluation(metrics, curves)
