"""The network is the TF OD API's: parameter counts, checkpoint keys, and the outputs of the OD API's
own checkpoints (zoo320, small128) on the fixtures' images, directly and through Boxwise's export."""
from __future__ import annotations

import numpy as np
import pytest

from tests.training.odapi import FIXTURES, compare, config_without_fine_tune as _config_without_fine_tune, outputs


def _quick_detector(num_classes: int, depth_multiplier: float | None = None):
    from backend.config_document import ConfigDocument
    from backend.training.training_config import training_config
    from backend.training.network import build_detector
    from backend.training.templates import render_template

    doc = ConfigDocument(render_template("quick", num_classes=num_classes, train_input="t.record",
                                         eval_input="v.record", label_map_path="label_map.pbtxt",
                                         num_steps=10, batch_size=2))
    if depth_multiplier is not None:
        doc.set("model.ssd.feature_extractor.depth_multiplier", depth_multiplier)
    return build_detector(training_config(doc).model)


def _trainable(model) -> int:
    import math
    return sum(math.prod(v.shape) for v in model.trainable_weights)


@pytest.mark.parametrize("num_classes,parameters,trainable", [(1, 2_598_116, 2_557_860), (3, 2_599_664, 2_559_408)])
def test_quick_template_builds_as_many_parameters_as_the_od_api(num_classes, parameters, trainable):
    """The OD API's model_builder on the quick template (depth_multiplier 1.0) builds 2,598,116
    parameters with 1 class and 2,599,664 with 3, in 384 variables (measured on the oracle, TF 2.15)."""
    from backend.training.network import count_parameters

    model = _quick_detector(num_classes)
    assert (count_parameters(model), _trainable(model), len(model.weights)) == (parameters, trainable, 384)
    assert [t.shape[-1] for t in model.backbone.outputs] == [24, 32, 96, 1280]  # MobileNetV2 at full width
    assert model.fpn.top_layers.filters == 128


@pytest.mark.parametrize("num_classes,parameters,trainable", [(1, 430_708, 412_196), (3, 432_256, 413_744)])
def test_min_depth_narrows_the_quick_network_at_width_035_as_the_od_api_does(num_classes, parameters, trainable):
    """The OD API's model_builder on the quick template at depth_multiplier 0.35 (min_depth 16) builds
    430,708 parameters with 1 class and 432,256 with 3 (measured on the oracle, TF 2.15)."""
    from backend.training.network import count_parameters

    model = _quick_detector(num_classes, depth_multiplier=0.35)
    assert count_parameters(model) == parameters
    assert _trainable(model) == trainable
    # min_depth: the 0.35 network's narrow layers are 16 wide, Conv_1 is make_divisible(1280 · 0.35) = 448.
    assert model.backbone.get_layer("expanded_conv_project").filters == 16
    assert model.backbone.get_layer("Conv_1").filters == 448
    assert [t.shape[-1] for t in model.backbone.outputs] == [16, 16, 32, 448]
    assert model.fpn.top_layers.filters == 44  # int(128 · 0.35)


def test_checkpoint_keys_name_every_variable_as_the_od_api_checkpoint_does(tmp_path):
    """All 384 variables pair with the OD API checkpoint's 384 keys, shapes equal; and Boxwise's
    own checkpoint has exactly the OD API's keys."""
    import tensorflow as tf

    from backend.training import restore
    from backend.training.train import load_detector

    _, model = load_detector(_config_without_fine_tune("small128", tmp_path))
    mapping = restore.checkpoint_variables(model)
    saved = tf.train.load_checkpoint(str(FIXTURES / "small128/checkpoint/ckpt-0")).get_variable_to_shape_map()
    saved = {k: tuple(v) for k, v in saved.items() if k.startswith("model/")}
    assert len(mapping) == len(saved) == 384
    assert {k + restore.SUFFIX: tuple(v.shape) for k, (_, v) in mapping.items()} == saved
    parts = {}
    for part, _ in mapping.values():
        parts[part] = parts.get(part, 0) + 1
    assert parts == {"backbone": 260, "fpn": 30, "tower": 8, "tower_batch_norm": 80, "box_head": 3, "class_head": 3}
    prefix = restore.checkpoint_for(model).write(str(tmp_path / "ours" / "ckpt-1"))
    written = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    assert {k: tuple(v) for k, v in written.items() if k.startswith("model/")} == saved


@pytest.mark.slow
@pytest.mark.parametrize("name", ["small128", "zoo320"])
def test_restored_od_api_checkpoint_gives_the_od_api_outputs(name, tmp_path):
    """The OD API's checkpoint in Boxwise gives its raw per-anchor boxes and scores and its final
    detections (paired by anchor index) within 1e-4 on the fixtures' three images (the 480×360
    and 128×128 ones resized by the fixed_shape_resizer)."""
    import tensorflow as tf

    from backend.training.savedmodel_export import DetectionModule
    from backend.training.train import load_detector

    config, model = load_detector(_config_without_fine_tune(name, tmp_path), str(FIXTURES / name / "checkpoint"))
    module = DetectionModule(config, model)
    expected = outputs(name)
    for image in range(3):
        found = {k: v.numpy() for k, v in module(tf.constant(expected[f"image{image}"][None])).items()}
        diffs = compare(found, expected, image)
        assert diffs["raw_detection_scores"] < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("name", ["small128", "zoo320"])
def test_boxwise_export_of_the_restored_checkpoint_gives_the_same(name, odapi_boxwise_export):
    """export_model (batch norm folded) of the OD API's checkpoint (the session's export,
    tests/conftest.py): the SavedModel's serving_default gives the OD API SavedModel's outputs
    within 1e-4."""
    import tensorflow as tf

    out = odapi_boxwise_export(name)
    detect = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    expected = outputs(name)
    for image in range(3):
        found = {k: v.numpy() for k, v in detect(input_tensor=tf.constant(expected[f"image{image}"][None])).items()}
        compare(found, expected, image)
    # The export's checkpoint is in the OD API's layout, readable by the OD API's loader.
    keys = tf.train.load_checkpoint(str(out / "checkpoint" / "ckpt-0")).get_variable_to_shape_map()
    assert "model/_feature_extractor/classification_backbone/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE" in keys


@pytest.mark.slow
def test_classification_checkpoint_reproduces_the_od_api_backbone_activations(tmp_path):
    """`classification/mobilenet_v2.ckpt-1` (root → feature_extractor → MobileNetV2) restores all
    260 backbone variables; the backbone's four taps equal the OD API's activations."""
    from backend.training import restore
    from backend.training.train import load_detector

    _, model = load_detector(_config_without_fine_tune("small128", tmp_path))
    report = restore.restore_classification(model, str(FIXTURES / "classification/mobilenet_v2.ckpt-1"))
    assert report.parts["backbone"] == {"variables": 260, "restored": 260, "parameters": 2_257_984,
                                        "restored_parameters": 2_257_984}
    assert report.parts["fpn"]["restored"] == 0 and report.parts["class_head"]["restored"] == 0
    with np.load(FIXTURES / "classification/activations.npz") as data:
        expected = {k: data[k] for k in data.files}
    taps = model.backbone(expected["input"], training=False)
    # output0..3: block_2_add, block_5_add, block_12_add, out_relu (activations.json).
    for index, tap in enumerate(taps):
        np.testing.assert_allclose(np.asarray(tap), expected[f"output{index}"], atol=1e-4)


def test_min_level_2_taps_block_2_add_as_the_od_api(tmp_path):
    """small128 with fpn/anchor min_level 2: the OD API builds 408 variables, 2,622,960
    parameters and 8,190 anchors (measured on the oracle); so does Boxwise."""
    from backend.config_document import ConfigDocument
    from backend.training.training_config import training_config
    from backend.training.network import build_detector, count_parameters
    from backend.training.train import replace_fine_tune_for_inference

    text = (FIXTURES / "small128" / "pipeline.config").read_text().replace("min_level: 3", "min_level: 2")
    model = build_detector(training_config(replace_fine_tune_for_inference(ConfigDocument(text))).model)
    assert (len(model.weights), count_parameters(model)) == (408, 2_622_960)
    assert model(np.zeros((1, 128, 128, 3), np.float32))["box_deltas"].shape[1] == 8190
    assert model.fpn.residual_blocks[-1].kernel.shape[2] == 24  # projection of block_2_add
