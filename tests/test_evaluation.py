"""COCO metrics and precision-recall curves through pycocotools, checked against hand-computed values."""
from __future__ import annotations

import pytest

from backend.evaluation import PRECISION, RECALL, RECALL_POINTS, coco_metrics, evaluate_coco

CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
CAT_A, CAT_B = [0, 0, 100, 100], [200, 200, 300, 300]      # ymin, xmin, ymax, xmax in pixels


def test_a_perfect_detector_scores_one_and_classes_without_ground_truth_are_left_out():
    truth = [{"image_id": "a", "boxes": [CAT_A, CAT_B], "classes": [1, 1]}]
    found = [{"image_id": "a", "boxes": [CAT_A, CAT_B], "classes": [1, 1], "scores": [0.9, 0.8]}]
    result = evaluate_coco(truth, found, CATEGORIES, per_category=True)
    assert result.metrics[f"{PRECISION}/mAP"] == pytest.approx(1.0)
    assert result.metrics[f"{RECALL}/AR@100"] == pytest.approx(1.0)
    assert result.metrics[f"{PRECISION}/mAP (small)"] == -1.0           # no small objects at all
    assert result.metrics[f"{PRECISION}/mAP ByCategory/dog"] == -1.0    # no dog in the ground truth
    assert list(result.pr_curves) == ["cat"]
    assert result.pr_curves["cat"] == [1.0] * 101


def test_a_false_positive_between_two_hits_gives_the_interpolated_curve():
    """Sorted by score: hit, miss, hit. Recall 0.5 at precision 1, then 0.5 at 1/2, then 1.0 at
    2/3; COCO interpolates precision as the best at any higher recall, so the curve is 1.0 up to
    recall 0.50 and 2/3 above it, and AP = (51·1 + 50·⅔) / 101."""
    truth = [{"image_id": 7, "boxes": [CAT_A, CAT_B], "classes": [1, 1]}]
    found = [{"image_id": 7, "boxes": [CAT_A, [400, 400, 450, 450], CAT_B], "classes": [1, 1, 1],
              "scores": [0.9, 0.8, 0.7]}]
    result = evaluate_coco(truth, found, CATEGORIES)
    curve = result.pr_curves["cat"]
    assert len(curve) == len(RECALL_POINTS) == 101 and RECALL_POINTS[50] == 0.5
    assert curve[:51] == [1.0] * 51
    assert curve[51:] == [pytest.approx(2 / 3, abs=1e-6)] * 50
    expected_ap = (51 + 50 * 2 / 3) / 101
    assert result.metrics[f"{PRECISION}/mAP@.50IOU"] == pytest.approx(expected_ap)
    assert result.metrics[f"{PRECISION}/mAP"] == pytest.approx(expected_ap)  # exact boxes: every IoU
    assert coco_metrics(truth, found, CATEGORIES) == result.metrics


def test_an_image_without_detections_counts_as_misses_and_normalised_boxes_use_the_size():
    truth = [{"image_id": "a", "boxes": [[0.0, 0.0, 0.5, 0.5]], "classes": [2]},
             {"image_id": "b", "boxes": [[0.5, 0.5, 1.0, 1.0]], "classes": [2]}]
    found = [{"image_id": "a", "boxes": [[0.0, 0.0, 0.5, 0.5]], "classes": [2], "scores": [0.6]},
             {"image_id": "b", "boxes": [], "classes": [], "scores": []}]
    result = evaluate_coco(truth, found, CATEGORIES, image_sizes={"a": (400, 400), "b": (400, 400)})
    # One of two dogs found, at precision 1: the curve is 1 up to recall 0.5, then 0.
    assert result.pr_curves["dog"] == [1.0] * 51 + [0.0] * 50
    assert result.metrics[f"{PRECISION}/mAP@.50IOU"] == pytest.approx(51 / 101)
    assert result.metrics[f"{PRECISION}/mAP (large)"] == pytest.approx(51 / 101)  # 200×200 px boxes
    assert result.metrics[f"{RECALL}/AR@100"] == pytest.approx(0.5)
