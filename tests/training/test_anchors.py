"""The multiscale anchor generator (`backend.training.anchors`): sizes, order and values against
hand-computed anchors and the OD API's own; one anchor per box prediction; numpy only."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.training import anchors as anchor_generator
from backend.training.anchors import AnchorSpec

REPO = Path(__file__).resolve().parents[2]


def test_anchor_count_and_first_anchors_at_64_pixels():
    anchors = anchor_generator.generate_anchors(64, 64, AnchorSpec())
    # Levels 3..7 at 64 px: 8x8, 4x4, 2x2, 1x1, 1x1 cells, 6 anchors each.
    assert anchor_generator.feature_sizes(64, 64, 3, 7) == [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    assert anchors.shape == ((64 + 16 + 4 + 1 + 1) * 6, 4)
    # Level 3, cell (0, 0): centre (4, 4) px, side anchor_scale * 2**3 = 32 px.
    np.testing.assert_allclose(anchors[0], [-12 / 64, -12 / 64, 20 / 64, 20 / 64], atol=1e-6)
    # Inside a cell the OD API's order: (scale 0, ratio 1), (scale 1, ratio 1), (scale 0, ratio 2), ...
    s = 32 * 2 ** 0.5  # second scale of the octave
    np.testing.assert_allclose(anchors[1], [(4 - s / 2) / 64] * 2 + [(4 + s / 2) / 64] * 2, atol=1e-6)
    # Aspect ratio 2 (wider): h = 32 / sqrt 2, w = 32 * sqrt 2.
    h, w = 32 / math.sqrt(2), 32 * math.sqrt(2)
    np.testing.assert_allclose(anchors[2], [(4 - h / 2) / 64, (4 - w / 2) / 64, (4 + h / 2) / 64,
                                            (4 + w / 2) / 64], atol=1e-6)
    # Level 7's stride (128) does not divide 64, so its single cell's centre has no half-stride
    # offset (as the OD API's multiscale generator): centre (0, 0), side 4 * 128 = 512 px.
    np.testing.assert_allclose(anchors[-6], [-256 / 64, -256 / 64, 256 / 64, 256 / 64], atol=1e-6)


def test_anchors_equal_the_od_api_anchors_bit_for_bit():
    from tests.training.odapi import FIXTURES
    expected = np.load(FIXTURES / "train_step" / "batch.npz")["anchors"]
    np.testing.assert_array_equal(anchor_generator.generate_anchors(128, 128, AnchorSpec()), expected)


@pytest.mark.parametrize("height,width", [(64, 64), (96, 128), (320, 320)])
def test_model_outputs_one_prediction_per_anchor(height, width):
    from backend.training.network import ModelSpec, build_detector
    spec = ModelSpec(num_classes=3, height=height, width=width, depth_multiplier=0.35, depth=16,
                     num_layers_before_predictor=1)
    model = build_detector(spec)
    out = model(np.zeros((1, height, width, 3), np.float32))
    count = len(anchor_generator.generate_anchors(height, width, spec.anchors))
    assert tuple(out["box_deltas"].shape) == (1, count, 4)
    assert tuple(out["class_logits"].shape) == (1, count, 3 + 1)  # background first
    # The class bias starts at -4.6 (p = 0.01), so untrained scores are low everywhere.
    np.testing.assert_allclose(np.asarray(model.predictor.class_head.bias), -4.6, rtol=1e-6)


def test_the_anchor_settings_and_the_config_doctor_import_neither_tensorflow_nor_keras():
    code = ("import sys\nfrom backend.training import anchors\nfrom backend import anchor_coverage, config_doctor\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


def test_the_doctors_anchor_grid_is_the_trainers_anchor_spec_on_a_canvas():
    from backend.anchor_coverage import AnchorGrid
    grid = AnchorGrid(96, 128, anchor_scale=3.0, max_level=6)
    assert isinstance(grid, AnchorSpec)
    assert [grid.cells(level) for level in range(3, 7)] == anchor_generator.feature_sizes(96, 128, 3, 6)
    spec = AnchorSpec(anchor_scale=3.0, max_level=6)
    assert len(anchor_generator.generate_anchors(96, 128, grid)) == len(
        anchor_generator.generate_anchors(96, 128, spec)) == (12 * 16 + 6 * 8 + 3 * 4 + 2 * 2) * 6
    assert AnchorGrid(320, 320).aspect_ratios == AnchorSpec().aspect_ratios == (1.0, 2.0, 0.5)
