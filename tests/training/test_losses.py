"""Focal and smooth-L1 losses, normalised by the number of matches, on hand-computed cases."""
from __future__ import annotations

import math

import numpy as np

from backend.training import losses
from backend.training.anchor_matching import MatcherSpec

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


def test_focal_loss_without_alpha_or_gamma():
    values = np.asarray(losses.sigmoid_focal_loss(np.array([1.0, 0.0]), np.array([0.0, 0.0]), None, 0.0))
    np.testing.assert_allclose(values, [LOG2, LOG2], rtol=1e-6)


ANCHORS = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]], np.float32)
GT_BOXES = np.array([[[0.0, 0.0, 0.5, 0.5], [0, 0, 0, 0]]], np.float32)
GT_CLASSES = np.array([[2, 0]])
POSITIVE, NEGATIVE = 0.25 * 0.25 * LOG2, 0.75 * 0.25 * LOG2  # focal at p = 0.5


def _two_anchor_losses(**spec):
    deltas = np.zeros((1, 2, 4), np.float32)
    deltas[0, 0] = [1.0, 0.0, 0.0, 0.0]       # matched anchor: off by one unit in ty
    deltas[0, 1] = [9.0, 9.0, 9.0, 9.0]       # background anchor: box loss must not count
    logits = np.zeros((1, 2, 3), np.float32)  # background + 2 classes, p = 0.5 everywhere
    return losses.ssd_losses(ANCHORS, deltas, logits, GT_BOXES, GT_CLASSES, num_classes=2,
                             spec=losses.LossSpec(focal_alpha=0.25, **spec), matcher=MatcherSpec(0.5, 0.5, True))


def test_ssd_losses_normalised_by_matches():
    out = _two_anchor_losses(normalize_loc_by_codesize=True)
    assert float(out["num_matches"]) == 1.0
    # Localisation: huber(1) = 0.5, divided by the code size 4 and by 1 match.
    assert math.isclose(float(out["localization"]), 0.5 / 4, rel_tol=1e-6)
    # Anchor 0 (class id 2): targets [0, 0, 1]. Anchor 1 is background: without
    # encode_background_as_zeros its target is [1, 0, 0]: one positive, two negatives each.
    assert math.isclose(float(out["classification"]), 2 * POSITIVE + 4 * NEGATIVE, rel_tol=1e-5)


def test_background_as_zeros_makes_the_background_column_a_negative():
    out = _two_anchor_losses(encode_background_as_zeros=True)
    assert math.isclose(float(out["localization"]), 0.5, rel_tol=1e-6)  # no code-size division
    assert math.isclose(float(out["classification"]), POSITIVE + 5 * NEGATIVE, rel_tol=1e-5)


def test_targets_mark_ignored_anchors_with_zero_class_weight():
    anchors = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.3]], np.float32)  # IoU 1.0 and 0.6
    targets = losses.assign_targets(anchors, GT_BOXES, GT_CLASSES, 2, MatcherSpec(0.7, 0.3, False))
    assert np.asarray(targets["match"]).tolist() == [[0, -2]]
    assert np.asarray(targets["cls_weights"]).tolist() == [[[1, 1, 1], [0, 0, 0]]]
    assert np.asarray(targets["cls_targets"]).tolist() == [[[0, 0, 1], [1, 0, 0]]]
    assert np.asarray(targets["reg_weights"]).tolist() == [[1, 0]]
    np.testing.assert_array_equal(np.asarray(targets["reg_targets"])[0, 1], [0, 0, 0, 0])


def test_no_objects_gives_background_loss_only_divided_by_one():
    anchors = np.array([[0.0, 0.0, 0.5, 0.5]], np.float32)
    out = losses.ssd_losses(anchors, np.zeros((1, 1, 4), np.float32), np.zeros((1, 1, 2), np.float32),
                            np.zeros((1, 1, 4), np.float32), np.zeros((1, 1), np.int64), num_classes=1,
                            spec=losses.LossSpec(focal_alpha=0.25, encode_background_as_zeros=True))
    assert float(out["num_matches"]) == 0.0
    assert float(out["localization"]) == 0.0
    assert math.isclose(float(out["classification"]), 2 * NEGATIVE, rel_tol=1e-5)


def test_trim_padding_keeps_every_column_up_to_the_batchs_last_real_box():
    boxes = np.arange(3 * 6 * 4, dtype=np.float32).reshape(3, 6, 4)
    classes = np.array([[1, 0, 0, 0, 0, 0],
                        [2, 0, 3, 0, 0, 0],   # a padding column between two boxes stays
                        [0, 0, 0, 0, 0, 0]])
    kept_boxes, kept_classes = losses.trim_padding(boxes, classes)
    np.testing.assert_array_equal(np.asarray(kept_classes), classes[:, :3])
    np.testing.assert_array_equal(np.asarray(kept_boxes), boxes[:, :3])
    # A batch without any box keeps one column: the matcher still has an axis to reduce over.
    none_boxes, none_classes = losses.trim_padding(boxes, np.zeros((3, 6), np.int32))
    assert np.asarray(none_boxes).shape == (3, 1, 4) and np.asarray(none_classes).shape == (3, 1)


def test_trimmed_and_untrimmed_targets_are_equal():
    """Random boxes, 3 images with 0, 2 and 4 boxes in 10 slots (one gap): the same targets either way."""
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 1, (3, 10, 2, 2)).astype(np.float32)
    boxes = np.concatenate([corners.min(axis=2), corners.max(axis=2)], axis=-1)
    classes = np.zeros((3, 10), np.int32)
    classes[1, :2] = [1, 2]
    classes[2, [0, 1, 3, 4]] = [2, 2, 1, 1]
    anchor_corners = rng.uniform(0, 1, (50, 2, 2)).astype(np.float32)
    anchors = np.concatenate([anchor_corners.min(axis=1), anchor_corners.max(axis=1)], axis=-1)
    spec = MatcherSpec(0.3, 0.1, True)
    trimmed = losses.assign_targets(anchors, boxes, classes, 2, spec)
    full = losses.assign_targets(anchors, boxes, classes, 2, spec, trim=False)
    assert np.asarray(trimmed["match"]).max() == 4 and (np.asarray(trimmed["match"])[0] == -1).all()
    for name in ("match", "cls_targets", "cls_weights", "reg_targets", "reg_weights"):
        np.testing.assert_array_equal(np.asarray(trimmed[name]), np.asarray(full[name]), err_msg=name)
