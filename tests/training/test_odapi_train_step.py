"""One training step of the TF OD API (tests/fixtures/odapi/train_step/), reproduced piece by piece.

The fixture was written by the real OD API (`model_lib_v2`) for the small128 config and weights:
the per-anchor targets of a fixed batch, the predictions, the four losses, the gradient norm of
every trainable variable and the losses after one SGD step. Targets and losses are computed here
from the fixture's own anchors, ground truth and predictions, through the config the OD API read.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backend.pipeline_config import ConfigDocument
from backend.training import losses
from backend.training.config import training_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "odapi"
STEP = FIXTURES / "train_step"


@pytest.fixture(scope="module")
def batch():
    return dict(np.load(STEP / "batch.npz"))


@pytest.fixture(scope="module")
def reference():
    return json.loads((STEP / "losses.json").read_text())


@pytest.fixture(scope="module")
def config():
    return training_config(ConfigDocument.load(FIXTURES / "small128" / "pipeline.config"))


def padded_ground_truth(batch, max_boxes: int = 5):
    """The fixture's per-image boxes and classes, zero-padded as Boxwise's input pipeline pads them."""
    boxes = np.zeros((4, max_boxes, 4), np.float32)
    classes = np.zeros((4, max_boxes), np.int32)
    for i in range(4):
        n = len(batch[f"classes{i}"])
        boxes[i, :n] = batch[f"boxes{i}"]
        classes[i, :n] = batch[f"classes{i}"]
    return boxes, classes


def targets_for(batch, config):
    boxes, classes = padded_ground_truth(batch)
    return losses.assign_targets(batch["anchors"], boxes, classes, config.model.num_classes, config.matcher,
                                 config.box_scales, config.loss.encode_background_as_zeros)


def test_the_config_is_read_with_the_fields_the_od_api_used(config):
    assert config.matcher.force_match_for_each_row and not config.matcher.ignore_thresholds
    assert config.matcher.negatives_lower_than_unmatched
    assert (config.matcher.matched_threshold, config.matcher.unmatched_threshold) == (0.5, 0.5)
    assert config.loss.encode_background_as_zeros and config.loss.normalize_loc_by_codesize
    assert (config.loss.focal_alpha, config.loss.focal_gamma) == (0.25, 2.0)


def test_targets_equal_the_od_api_target_assigner(batch, config):
    targets = targets_for(batch, config)
    match = np.asarray(targets["match"])
    np.testing.assert_array_equal(match, batch["match"])
    # 107 matched anchors over the 4 images (24, 7, 45, 31), the rest background, none ignored.
    assert (match >= 0).sum(axis=1).tolist() == [24, 7, 45, 31]
    for name in ("cls_targets", "cls_weights", "reg_weights"):
        np.testing.assert_array_equal(np.asarray(targets[name]), batch[name], err_msg=name)
    np.testing.assert_allclose(np.asarray(targets["reg_targets"]), batch["reg_targets"], rtol=0, atol=1e-5)


def test_padding_does_not_change_the_targets(batch, config):
    boxes, classes = padded_ground_truth(batch, max_boxes=100)
    wide = losses.assign_targets(batch["anchors"], boxes, classes, 3, config.matcher, config.box_scales,
                                 True)
    np.testing.assert_array_equal(np.asarray(wide["match"]), batch["match"])


def test_losses_equal_the_od_api_losses(batch, config, reference):
    targets = targets_for(batch, config)
    out = losses.losses_from_targets(batch["box_encodings"], batch["class_predictions_with_background"],
                                     targets, config.loss)
    expected = reference["losses_before"]
    assert float(out["num_matches"]) == 107.0
    assert float(out["localization"]) == pytest.approx(expected["Loss/localization_loss"], rel=1e-4)
    assert float(out["classification"]) == pytest.approx(expected["Loss/classification_loss"], rel=1e-4)
    # And from the ground truth directly, as the trainer calls it.
    boxes, classes = padded_ground_truth(batch)
    direct = losses.ssd_losses(batch["anchors"], batch["box_encodings"], batch["class_predictions_with_background"],
                               boxes, classes, 3, config.loss, config.matcher, config.box_scales)
    assert float(direct["localization"]) == pytest.approx(expected["Loss/localization_loss"], rel=1e-4)
    assert float(direct["classification"]) == pytest.approx(expected["Loss/classification_loss"], rel=1e-4)


def test_each_loss_setting_moves_the_loss_as_the_od_api_defines_it(batch, config, reference):
    """Flipping one setting changes the loss by the factor its definition implies: a wrong column,
    weight or normaliser shows here."""
    from dataclasses import replace
    targets = targets_for(batch, config)
    predictions = (batch["box_encodings"], batch["class_predictions_with_background"])
    base = reference["losses_before"]
    no_codesize = losses.losses_from_targets(*predictions, targets, replace(config.loss, normalize_loc_by_codesize=False))
    assert float(no_codesize["localization"]) == pytest.approx(4 * base["Loss/localization_loss"], rel=1e-4)
    unnormalised = losses.losses_from_targets(*predictions, targets, replace(config.loss, normalize_by_num_matches=False))
    assert float(unnormalised["classification"]) == pytest.approx(107 * base["Loss/classification_loss"], rel=1e-4)
    weighted = losses.losses_from_targets(*predictions, targets,
                                          replace(config.loss, classification_weight=2.0, localization_weight=0.5))
    assert float(weighted["classification"]) == pytest.approx(2 * base["Loss/classification_loss"], rel=1e-4)
    assert float(weighted["localization"]) == pytest.approx(0.5 * base["Loss/localization_loss"], rel=1e-4)
    # The background column counts (0.0159 of the 0.7617): without it the loss is off by 2 %.
    logits = batch["class_predictions_with_background"]
    focal = np.asarray(losses.sigmoid_focal_loss(batch["cls_targets"], logits, 0.25, 2.0)) * batch["cls_weights"]
    assert focal.sum() / 107 == pytest.approx(base["Loss/classification_loss"], rel=1e-4)
    assert focal[..., 0].sum() / 107 == pytest.approx(0.015908, rel=1e-3)
    # No alpha in the config means no alpha factor at all (not 0.25).
    no_alpha = losses.losses_from_targets(*predictions, targets, replace(config.loss, focal_alpha=None))
    plain = np.asarray(losses.sigmoid_focal_loss(batch["cls_targets"], logits, None, 2.0)) * batch["cls_weights"]
    assert float(no_alpha["classification"]) == pytest.approx(plain.sum() / 107, rel=1e-5)
    assert float(no_alpha["classification"]) > 2 * base["Loss/classification_loss"]
