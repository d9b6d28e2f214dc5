"""Restoring checkpoints: what each kind restores, the report's counts, and refusals before step 1."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tests.training.odapi import FIXTURES

SMALL_CKPT = str(FIXTURES / "small128" / "checkpoint" / "ckpt-0")


@pytest.fixture(scope="module")
def small_spec():
    from backend.config_document import ConfigDocument
    from backend.training.training_config import training_config
    from backend.training.train import replace_fine_tune_for_inference
    doc = replace_fine_tune_for_inference(ConfigDocument.load(FIXTURES / "small128" / "pipeline.config"))
    return training_config(doc).model


@pytest.fixture(scope="module")
def small_model(small_spec):
    from backend.training.network import build_detector
    return build_detector(small_spec)


def _value(key):
    import tensorflow as tf
    return tf.train.load_checkpoint(SMALL_CKPT).get_tensor(key + "/.ATTRIBUTES/VARIABLE_VALUE")


def test_detection_checkpoint_with_the_same_classes_restores_every_variable(small_model):
    from backend.training import restore
    report = restore.restore_detection(small_model, SMALL_CKPT)
    summary = report.to_dict()
    assert (summary["restored"], summary["variables"]) == (384, 384)
    assert summary["restored_parameters"] == summary["parameters"] == 2_599_664
    assert summary["fresh"] == {}
    assert summary["unused"] == {"save_counter/.ATTRIBUTES/VARIABLE_VALUE": "counter"}
    assert report.layout == "TF OD API ssd checkpoint (384 model variables)"
    np.testing.assert_array_equal(small_model.predictor.class_head.bias.numpy(), _value(restore.CLASS_HEAD + "/bias"))
    assert "detection restore from" in report.summary() and "384 of 384 variables" in report.summary()


def test_detection_checkpoint_with_other_classes_starts_only_the_class_head_fresh(small_spec):
    from backend.training import restore
    from backend.training.network import build_detector

    model = build_detector(dataclasses.replace(small_spec, num_classes=5))
    fresh_head = model.predictor.class_head.pointwise_kernel.numpy().copy()
    report = restore.restore_detection(model, SMALL_CKPT)
    parts = report.parts
    assert parts["class_head"]["restored"] == 0 and parts["class_head"]["variables"] == 3
    assert all(parts[p]["restored"] == parts[p]["variables"]
               for p in ("backbone", "fpn", "tower", "tower_batch_norm", "box_head"))
    assert len(report.restored) == 381
    # Head bias [24] (6 anchors x 4 slots) against [36] (6 x 6): the whole head stays as initialised.
    reason = "class head for other classes (outputs [24] in the checkpoint, [36] here): starts fresh"
    assert report.fresh == {restore.CLASS_HEAD + f"/{name}": reason
                            for name in ("depthwise_kernel", "pointwise_kernel", "bias")}
    assert report.summary().endswith(f"fresh: 3 ({reason}); checkpoint values not used: 3 (shape differs from "
                                     "this model's); 1 (counter)")
    np.testing.assert_array_equal(model.predictor.class_head.pointwise_kernel.numpy(), fresh_head)
    np.testing.assert_array_equal(model.predictor.box_head.pointwise_kernel.numpy(),
                                  _value(restore.BOX_HEAD + "/pointwise_kernel"))
    np.testing.assert_array_equal(
        model.predictor.tower_bn[3].moving_mean.numpy(),  # layer 0, level 3
        _value(f"{restore.PREDICTOR}/_base_tower_layers_for_heads/box_encodings/3/1/moving_mean"))
    assert report.unused_counts() == {"shape differs from this model's": 3, "counter": 1}


def test_model_dir_checkpoint_restores_the_model_and_ignores_the_optimizer(small_model):
    """`small128/model_dir` (as model_main_tf2.py writes it): the directory resolves to ckpt-1;
    its 234 optimizer values (SGD momentum slots, iterations, learning rate) are reported, not used."""
    from backend.training import restore
    report = restore.restore_detection(small_model, str(FIXTURES / "small128" / "model_dir"))
    assert report.source.endswith("model_dir/ckpt-1")
    assert report.layout == "TF OD API ssd checkpoint (384 model variables, with optimizer state)"
    assert len(report.restored) == 384
    assert report.unused_counts() == {"optimizer state (not used by fine-tuning)": 234, "counter": 2}


def test_a_zoo_folder_holding_checkpoint_resolves(small_model):
    from backend.training import restore
    assert restore.resolve_checkpoint(str(FIXTURES / "small128")).endswith("small128/checkpoint/ckpt-0")
    assert restore.resolve_checkpoint(str(FIXTURES / "small128" / "checkpoint")).endswith("checkpoint/ckpt-0")


def _foreign_checkpoint(tmp_path, **objects):
    import tensorflow as tf
    return tf.train.Checkpoint(**objects).write(str(tmp_path / "foreign" / "ckpt-1"))


def test_a_checkpoint_of_other_variables_is_refused_with_what_it_looks_like(small_model, tmp_path):
    import tensorflow as tf

    from backend.errors import Invalid
    from backend.training import restore
    before = small_model.backbone.weights[0].numpy().copy()
    other = _foreign_checkpoint(tmp_path, dense=tf.train.Checkpoint(kernel=tf.Variable(tf.zeros([3, 4]))))
    with pytest.raises(Invalid) as error:
        restore.restore_detection(small_model, other)
    assert ("TF checkpoint with 1 variables, not in the TF OD API layout (first key dense/kernel/.ATTRIBUTES/"
            "VARIABLE_VALUE): 0 of 260 backbone variables match this model, so it cannot start the run") in str(error.value)
    # A faster_rcnn layout: keys under model/_feature_extractor/ without an SSD box predictor.
    rcnn = _foreign_checkpoint(tmp_path, model=tf.train.Checkpoint(
        _feature_extractor=tf.train.Checkpoint(conv=tf.Variable(tf.zeros([3]))),
        _first_stage_box_predictor=tf.train.Checkpoint(bias=tf.Variable(tf.zeros([2])))))
    with pytest.raises(Invalid, match=r"TF OD API faster_rcnn checkpoint \(2 model variables\): 0 of 260 backbone "
                                      r"variables match"):
        restore.restore_detection(small_model, rcnn)
    np.testing.assert_array_equal(small_model.backbone.weights[0].numpy(), before)


def test_a_classification_checkpoint_given_as_detection_says_so(small_model):
    from backend.errors import Invalid
    from backend.training import restore
    with pytest.raises(Invalid, match=r"TF OD API classification checkpoint \(feature_extractor/\.\.\., 260 "
                                      r"variables\): 0 of 260 backbone variables match .*fine_tune_checkpoint_type: "
                                      r"\"classification\""):
        restore.restore_detection(small_model, str(FIXTURES / "classification" / "mobilenet_v2.ckpt-1"))


def test_an_old_boxwise_checkpoint_is_refused_not_converted(small_model, tmp_path):
    import tensorflow as tf

    from backend.errors import Invalid
    from backend.training import restore
    old = _foreign_checkpoint(tmp_path, model=tf.train.Checkpoint(
        **{"backbone.Conv1.kernel": tf.Variable(tf.zeros([3, 3, 3, 32]))}))
    with pytest.raises(Invalid, match="before 2026-12 .*refused rather than converted"):
        restore.restore_detection(small_model, old)
    with pytest.raises(Invalid, match="refused rather than converted"):
        restore.restore_weights(small_model, old)


def test_inference_and_resume_need_every_variable(small_spec, tmp_path):
    from backend.errors import Invalid
    from backend.training import restore
    from backend.training.network import build_detector

    other = build_detector(dataclasses.replace(small_spec, num_classes=5))
    untouched = other.backbone.weights[0].numpy().copy()
    with pytest.raises(Invalid, match=r"does not fit this config's model: 382 of 384 variables match \(e\.g\. "
                                      r"model/_box_predictor/_prediction_heads/.*/pointwise_kernel: shape \[1, 1, 128, 24\] "
                                      r"in the checkpoint, \[1, 1, 128, 36\] here\)"):
        restore.restore_weights(other, SMALL_CKPT)
    np.testing.assert_array_equal(other.backbone.weights[0].numpy(), untouched)  # nothing half-restored


def test_keras_h5_weights_restore_the_backbone(small_model, tmp_path):
    import keras

    from backend.training import restore
    source = keras.applications.MobileNetV2(input_shape=(128, 128, 3), alpha=1.0, include_top=False, weights=None)
    path = tmp_path / "mobilenet_v2.weights.h5"
    source.save_weights(str(path))
    report = restore.restore_classification(small_model, str(path))
    assert report.layout == "Keras MobileNetV2 weights (.h5)"
    assert report.parts["backbone"]["restored"] == report.parts["backbone"]["variables"] == 260
    assert len(report.restored) == 260
    assert report.fresh[restore.BOX_HEAD + "/bias"] == "box_head is not restored by classification fine-tuning"
    np.testing.assert_array_equal(small_model.backbone.get_layer("block_16_project").kernel.numpy(),
                                  source.get_layer("block_16_project").kernel.numpy())
    np.testing.assert_array_equal(small_model.backbone.get_layer("block_3_depthwise").kernel.numpy(),
                                  source.get_layer("block_3_depthwise").kernel.numpy())


def test_reports_are_appended_per_start(small_model, tmp_path):
    from backend.training import restore
    restore.write_report(tmp_path, restore.scratch_report(small_model), 0)
    restore.write_report(tmp_path, restore.restore_weights(small_model, SMALL_CKPT), 40)
    reports = json.loads((tmp_path / "restore_report.json").read_text())
    assert [(r["kind"], r["step"], r["restored"], r["variables"]) for r in reports] == [
        ("scratch", 0, 0, 384), ("resume", 40, 384, 384)]
    assert reports[0]["fresh"][restore.CLASS_HEAD + "/bias"] == "no checkpoint: initializer"
    assert reports[1]["parts"]["tower_batch_norm"] == {"variables": 80, "restored": 80, "parameters": 10_240,
                                                       "restored_parameters": 10_240}


@pytest.mark.slow
def test_training_refuses_a_non_matching_checkpoint_before_step_1(tmp_path):
    import tensorflow as tf

    from backend.errors import Invalid
    from backend.config_document import ConfigDocument
    from backend.training import progress
    from backend.training.train import run_training

    other = _foreign_checkpoint(tmp_path, dense=tf.train.Checkpoint(kernel=tf.Variable(tf.zeros([3, 4]))))
    doc = ConfigDocument.load(FIXTURES / "small128" / "pipeline.config")
    doc.set("train_config.fine_tune_checkpoint", other)
    doc.set("train_config.fine_tune_checkpoint_type", "detection")
    doc.set("train_input_reader.tf_record_input_reader.input_path", str(FIXTURES / "parity" / "train.record-*"))
    doc.set("train_input_reader.label_map_path", str(FIXTURES / "small128" / "label_map.pbtxt"))
    doc.set("eval_input_reader.tf_record_input_reader.input_path", str(FIXTURES / "parity" / "val.record-*"))
    doc.set("eval_input_reader.label_map_path", str(FIXTURES / "small128" / "label_map.pbtxt"))
    config = tmp_path / "pipeline.config"
    config.write_text(doc.text)
    model_dir = tmp_path / "run"
    with pytest.raises(Invalid, match="0 of 260 backbone variables match this model, so it cannot start the run"):
        run_training(config, model_dir, num_train_steps=1)
    status = progress.read_status(model_dir)
    assert status["state"] == "failed" and status["step"] == 0
    assert "0 of 260 backbone variables match" in status["error"]
    assert not list(model_dir.glob("ckpt-*")) and not (model_dir / "restore_report.json").exists()


def test_resume_restores_boxwise_checkpoints_with_their_optimizer(small_spec, small_model, tmp_path):
    import keras
    import tensorflow as tf

    from backend.training import restore
    from backend.training.network import build_detector

    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build(small_model.trainable_variables)
    optimizer.iterations.assign(7)
    manager = tf.train.CheckpointManager(restore.checkpoint_for(small_model, optimizer), str(tmp_path), max_to_keep=3)
    prefix = manager.save()
    model = build_detector(small_spec)
    fresh = keras.optimizers.Adam(0.01)
    fresh.build(model.trainable_variables)
    manager.save()  # ckpt-2
    root = restore.checkpoint_for(model, fresh)
    report = restore.resume(model, fresh, str(tmp_path), root=root)
    assert (len(report.restored), report.kind) == (384, "resume")
    assert int(fresh.iterations.numpy()) == 7
    assert report.unused_counts() == {}
    # The next checkpoint is numbered after the last one, not ckpt-1 again.
    assert tf.train.CheckpointManager(root, str(tmp_path), max_to_keep=3).save().endswith("ckpt-3")
    from backend.training.evaluate import checkpoint_step
    assert checkpoint_step(prefix) == 7  # optimizer/_iterations, where the OD API keeps it too
    assert checkpoint_step(str(FIXTURES / "small128" / "model_dir" / "ckpt-1")) == 1
    keys = {k for k, _ in tf.train.list_variables(prefix)}
    assert {k for k in keys if k.startswith("model/")} == {
        k for k, _ in tf.train.list_variables(SMALL_CKPT) if k.startswith("model/")}
    # A checkpoint without this optimizer's state cannot resume.
    from backend.errors import Invalid
    with pytest.raises(Invalid, match=r"cannot resume from .*the optimizer state differs \(0 values saved"):
        restore.resume(model, fresh, SMALL_CKPT)
    np.testing.assert_array_equal(model.fpn.top_layers.kernel.numpy(), small_model.fpn.top_layers.kernel.numpy())
