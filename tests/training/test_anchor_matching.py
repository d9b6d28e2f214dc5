"""IoU, the faster_rcnn box coder and argmax matching on hand-computed cases."""
from __future__ import annotations

import math

import numpy as np

from backend.training import anchor_matching
from backend.training.anchor_matching import MatcherSpec
from backend.training.anchors import AnchorSpec, generate_anchors


def test_encode_matches_the_faster_rcnn_coder_by_hand():
    anchors = np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)
    box = np.array([[[0.1, 0.2, 0.5, 0.6]]], np.float32)  # centre (0.3, 0.4), 0.4 x 0.4
    deltas = np.asarray(anchor_matching.encode(box, anchors))
    np.testing.assert_allclose(deltas[0, 0], [10 * -0.2, 10 * -0.1, 5 * math.log(0.4), 5 * math.log(0.4)],
                               rtol=1e-5)


def test_encode_decode_round_trip():
    rng = np.random.default_rng(0)
    anchors = generate_anchors(96, 96, AnchorSpec())
    centre = rng.uniform(0.1, 0.9, size=(2, len(anchors), 2))
    size = rng.uniform(0.05, 0.5, size=(2, len(anchors), 2))
    gt = np.concatenate([centre - size / 2, centre + size / 2], axis=-1).astype(np.float32)
    decoded = np.asarray(anchor_matching.decode(anchor_matching.encode(gt, anchors), anchors))
    np.testing.assert_allclose(decoded, gt, atol=1e-5)


ANCHORS = np.array([
    [0.0, 0.0, 0.5, 0.5],    # A0: equals g0
    [0.5, 0.5, 1.0, 1.0],    # A1: IoU 0.8 with g1
    [0.0, 0.0, 0.4, 0.5],    # A2: IoU 0.8 with g0
    [0.6, 0.0, 1.0, 0.4],    # A3: IoU 0.1875 with g2 (its best anchor)
    [0.0, 0.0, 0.5, 0.3],    # A4: IoU 0.6 with g0
], np.float32)
GT = np.array([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.9, 1.0], [0.6, 0.0, 0.75, 0.2], [0, 0, 0, 0]]], np.float32)
VALID = np.array([[True, True, True, False]])


def test_argmax_matching_with_forced_matches():
    match = anchor_matching.match(ANCHORS, GT, VALID, MatcherSpec(0.5, 0.5, True))
    # A3's best IoU (0.1875, with g2) is below 0.5, but it is g2's best anchor: forced.
    assert np.asarray(match).tolist() == [[0, 1, 0, 2, 0]]


def test_argmax_matching_without_forcing_leaves_low_iou_unmatched_and_ignores_between():
    match = anchor_matching.match(ANCHORS, GT, VALID, MatcherSpec(0.7, 0.3, False))
    # A3 (0.1875) is background (-1); A4 (0.6) falls between 0.3 and 0.7 and is ignored (-2).
    assert np.asarray(match).tolist() == [[0, 1, 0, anchor_matching.UNMATCHED, anchor_matching.IGNORED]]


def test_negatives_between_the_thresholds_when_not_lower_than_unmatched():
    spec = MatcherSpec(0.7, 0.3, False, negatives_lower_than_unmatched=False)
    # The roles swap: below 0.3 is ignored, between 0.3 and 0.7 is background.
    assert np.asarray(anchor_matching.match(ANCHORS, GT, VALID, spec)).tolist() == [[0, 1, 0, -2, -1]]


def test_ignore_thresholds_matches_every_anchor_to_its_best_box():
    spec = MatcherSpec(0.9, 0.9, False, ignore_thresholds=True)
    assert np.asarray(anchor_matching.match(ANCHORS, GT, VALID, spec)).tolist() == [[0, 1, 0, 2, 0]]
    # Not even ignore_thresholds matches anything in an image without boxes.
    empty = anchor_matching.match(ANCHORS, np.zeros((1, 2, 4), np.float32), np.zeros((1, 2), bool), spec)
    assert np.asarray(empty).tolist() == [[-1] * 5]


def test_a_box_forced_onto_an_anchor_another_box_claims_loses_to_the_first_box():
    anchors = np.array([[0.0, 0.0, 1.0, 1.0], [0.9, 0.9, 1.0, 1.0]], np.float32)
    gt = np.array([[[0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 0.7, 0.7]]], np.float32)  # both best at anchor 0
    match = anchor_matching.match(anchors, gt, np.ones((1, 2), bool), MatcherSpec(0.5, 0.5, True))
    assert np.asarray(match).tolist() == [[0, -1]]


def test_matcher_settings_the_od_api_refuses():
    from backend.config_check import matcher_problems
    from backend.pipeline_schema import TrainEvalPipelineConfig

    def argmax(**values):
        config = TrainEvalPipelineConfig()
        for name, value in values.items():
            setattr(config.model.ssd.matcher.argmax_matcher, name, value)
        return config.model.ssd.matcher.argmax_matcher

    assert matcher_problems(argmax(matched_threshold=0.4)) == [
        "unmatched_threshold (0.5) must be ≤ matched_threshold (0.4)"]
    assert "needs unmatched_threshold < matched_threshold" in matcher_problems(
        argmax(negatives_lower_than_unmatched=False))[0]
    assert matcher_problems(argmax(matched_threshold=0.4, ignore_thresholds=True)) == []
    assert matcher_problems(argmax()) == []  # the schema's defaults: 0.5 and 0.5, negatives lower


def test_iou_is_zero_without_intersection_and_exact_otherwise():
    a = np.array([[0.0, 0.0, 0.5, 0.5]], np.float32)
    b = np.array([[0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 0.25], [0.0, 0.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(np.asarray(anchor_matching.iou(a, b)), [[0.0, 0.5, 0.0]], atol=0)


def test_padding_only_images_match_nothing():
    match = anchor_matching.match(ANCHORS, np.zeros((1, 2, 4), np.float32), np.zeros((1, 2), bool))
    assert np.asarray(match).tolist() == [[-1, -1, -1, -1, -1]]


def test_encode_adds_the_coder_epsilon_to_sizes():
    # A zero-height box against a unit anchor: log((0 + 1e-8) / (1 + 1e-8)), finite.
    anchors = np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)
    deltas = np.asarray(anchor_matching.encode(np.array([[[0.5, 0.0, 0.5, 1.0]]], np.float32), anchors))
    np.testing.assert_allclose(deltas[0, 0], [0.0, 0.0, 5 * math.log(1e-8), 0.0], rtol=1e-5, atol=1e-6)
