"""Focal and smooth-L1 losses, normalised by the number of matches, on hand-computed cases."""
from __future__ import annotations

import math

import numpy as np

from backend.training import losses
from backend.training.boxes import MatcherSpec

LOG2 = math.log(2.0)


def test_focal_loss_at_logit_zero():
    values = np.asarray(losses.sigmoid_focal_loss(np.array([1.0, 0.0]), np.array([0.0, 0.0])))
    # p = 0.5: CE = log 2, (1 - p_t)^2 = 0.25, alpha_t = 0.25 for positives, 0.75 for negatives.
    np.testing.assert_allclose(values, [0.25 * 0.25 * LOG2, 0.75 * 0.25 * LOG2], rtol=1e-6)


def test_focal_loss_down_weights_easy_examples():
    easy, hard = np.asarray(losses.sigmoid_focal_loss(np.array([1.0, 1.0]), np.array([4.0, -4.0])))
    p = 1 / (1 + math.exp(-4.0))
    assert math.isclose(easy, 0.25 * (1 - p) ** 2 * -math.log(p), rel_tol=1e-5)
    assert math.isclose(hard, 0.25 * p ** 2 * -math.log(1 - p), rel_tol=1e-5)


def test_smooth_l1_is_quadratic_below_one_and_linear_above():
    value = np.asarray(losses.smooth_l1(np.zeros((1, 4)), np.array([[0.5, 2.0, 0.0, -1.0]])))
    np.testing.assert_allclose(value, [0.125 + 1.5 + 0.0 + 0.5], rtol=1e-6)


def test_ssd_losses_normalised_by_matches():
    anchors = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]], np.float32)
    gt_boxes = np.array([[[0.0, 0.0, 0.5, 0.5], [0, 0, 0, 0]]], np.float32)
    gt_classes = np.array([[2, 0]])
    deltas = np.zeros((1, 2, 4), np.float32)
    deltas[0, 0] = [1.0, 0.0, 0.0, 0.0]       # matched anchor: off by one unit in ty
    deltas[0, 1] = [9.0, 9.0, 9.0, 9.0]       # background anchor: box loss must not count
    logits = np.zeros((1, 2, 2), np.float32)  # 2 classes, p = 0.5 everywhere
    out = losses.ssd_losses(anchors, deltas, logits, gt_boxes, gt_classes, num_classes=2,
                            matcher=MatcherSpec(0.5, 0.5, True))
    assert float(out["num_matches"]) == 1.0
    # Localisation: huber(1) = 0.5, divided by the code size 4 and by 1 match.
    assert math.isclose(float(out["localization"]), 0.5 / 4, rel_tol=1e-6)
    # Classification: anchor 0 has class id 2 → one positive (index 1) and one negative;
    # anchor 1 is background → two negatives.
    positive, negative = 0.25 * 0.25 * LOG2, 0.75 * 0.25 * LOG2
    assert math.isclose(float(out["classification"]), positive + 3 * negative, rel_tol=1e-5)


def test_no_objects_gives_background_loss_only_divided_by_one():
    anchors = np.array([[0.0, 0.0, 0.5, 0.5]], np.float32)
    out = losses.ssd_losses(anchors, np.zeros((1, 1, 4), np.float32), np.zeros((1, 1, 1), np.float32),
                            np.zeros((1, 1, 4), np.float32), np.zeros((1, 1), np.int64), num_classes=1)
    assert float(out["num_matches"]) == 0.0
    assert float(out["localization"]) == 0.0
    assert math.isclose(float(out["classification"]), 0.75 * 0.25 * LOG2, rel_tol=1e-5)
