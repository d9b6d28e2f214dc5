"""pipeline.config → trainer settings: what is used, refused by name and line, or ignored and logged."""
from __future__ import annotations


import pytest

from backend.errors import Invalid
from backend.config_document import ConfigDocument
from backend import config_check
from backend.auth import CLI_ACTOR
from backend.training.training_config import training_config
from backend.training.templates import TEMPLATES, template_text

from tests.helpers import SHARED_TFOD, needs_shared_tfod

SHARED = SHARED_TFOD / "configs"
FPNLITE = SHARED / "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config"


@needs_shared_tfod
def test_fpnlite_recipe_is_read_as_written():
    config = training_config(ConfigDocument.load(FPNLITE))
    assert config.model.num_classes == 90
    assert (config.model.height, config.model.width) == (320, 320)
    assert config.model.anchors.aspect_ratios == (1.0, 2.0, 0.5)
    assert config.model.anchors.scales_per_octave == 2 and config.model.anchors.anchor_scale == 4.0
    assert config.model.class_prediction_bias_init == -4.6 and config.model.depth == 128
    assert config.box_scales == (10.0, 10.0, 5.0, 5.0)
    assert (config.loss.focal_alpha, config.loss.focal_gamma) == (0.25, 2.0)
    assert config.loss.normalize_by_num_matches and config.loss.normalize_loc_by_codesize
    assert config.matcher.matched_threshold == 0.5 and config.matcher.force_match_for_each_row
    assert config.post_processing.iou_threshold == 0.6 and config.post_processing.max_total_detections == 100
    assert config.batch_size == 128 and config.num_steps == 50000
    assert config.optimizer.kind == "momentum" and config.optimizer.momentum == 0.9
    assert config.optimizer.learning_rate.kind == "cosine"
    assert config.optimizer.learning_rate.params["warmup_steps"] == 1000
    assert [a.kind for a in config.augmentations] == ["random_horizontal_flip", "random_crop_image"]
    assert config.augmentations[1].params["min_area"] == 0.75
    assert config.fine_tune_checkpoint_type == "classification"
    assert config.l2_weight == 0.00004


@needs_shared_tfod
def test_tpu_and_tf1_fields_are_listed_as_ignored_with_lines():
    listed = config_check.ignored(FPNLITE.read_text())
    reasons = {path: reason for path, _, reason in listed}
    assert reasons["train_config.sync_replicas"] == "TF 1 distributed training (SyncReplicasOptimizer)"
    assert {path: line for path, line, _ in listed} == {
        "model.ssd.inplace_batchnorm_update": 11,
        "model.ssd.matcher.argmax_matcher.use_matmul_gather": 29,
        "train_config.fine_tune_checkpoint_version": 141,
        "train_config.sync_replicas": 145,
        "train_config.startup_delay_steps": 146,
        "train_config.replicas_to_aggregate": 147,
        "train_config.unpad_groundtruth_tensors": 178,
    }


@needs_shared_tfod
def test_other_meta_architectures_are_refused_by_name_and_line():
    with pytest.raises(Invalid) as caught:
        training_config(ConfigDocument.load(SHARED / "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config"))
    assert "line 9: model.faster_rcnn: this trainer implements the SSD meta-architecture only" in str(caught.value)
    problems = config_check.check((SHARED / "centernet_hourglass104_512x512_coco17_tpu-8.config").read_text(), files=False)
    assert [(p.path, p.line) for p in problems] == [
        ("model.center_net", 11),
        ("train_config.data_augmentation_options[2].random_adjust_hue", 69),
        ("train_config.data_augmentation_options[4].random_adjust_saturation", 79),
        ("train_config.data_augmentation_options[6].random_absolute_pad_image", 89),
    ]


@needs_shared_tfod
def test_ssd_variants_this_trainer_does_not_implement_are_refused():
    problems = config_check.check((SHARED / "ssd_mobilenet_v2_320x320_coco17_tpu-8.config").read_text(), files=False)
    assert [(p.path, p.line) for p in problems] == [
        ("model.ssd.anchor_generator.ssd_anchor_generator", 36),
        ("model.ssd.box_predictor.convolutional_box_predictor", 54),
        ("model.ssd.feature_extractor.type", 88),
        ("train_config.data_augmentation_options[1].ssd_random_crop", 157),
    ]
    assert "'ssd_mobilenet_v2_keras' is not supported here" in problems[2].message


@needs_shared_tfod
def test_unknown_field_inside_the_model_is_refused():
    text = FPNLITE.read_text().replace("    num_classes: 90\n", "    num_classes: 90\n    use_keypoints: true\n")
    problems = config_check.check(text, files=False)
    assert [(p.path, p.line) for p in problems] == [("model.ssd.use_keypoints", 14)]


@needs_shared_tfod
def test_cosine_schedule_sanity_is_checked():
    doc = ConfigDocument.load(FPNLITE)
    doc.set("train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate.total_steps", 500)
    messages = [p.message for p in config_check.check(doc.text, files=False)]
    assert messages == ["total_steps (500) must be ≥ warmup_steps (1000)"]


@pytest.mark.parametrize("name", TEMPLATES)
def test_templates_are_accepted_with_nothing_ignored(name):
    doc = ConfigDocument(template_text(name))
    assert config_check.check(doc.text, files=False) == []
    assert [path for path, *_ in config_check.ignored(doc.text)] == []  # min_depth shapes the network (network.py)


def test_the_config_check_reports_missing_files_and_a_num_classes_the_label_map_contradicts(tmp_path):
    (tmp_path / "label_map.pbtxt").write_text("item { id: 1 name: 'a' }\nitem { id: 3 name: 'c' }\n")
    doc = ConfigDocument(template_text("quick"))
    doc.set("train_input_reader.label_map_path", str(tmp_path / "label_map.pbtxt"))
    doc.set("eval_input_reader.label_map_path", str(tmp_path / "label_map.pbtxt"))
    doc.set("train_config.fine_tune_checkpoint", str(tmp_path / "nothing.h5"))
    found = [(p.path, p.message) for p in config_check.check(doc.text, actor=CLI_ACTOR)]
    assert ("train_input_reader.tf_record_input_reader.input_path",
            "'PATH_TO_BE_CONFIGURED/train.record-?????-of-00010' matches no TFRecord shard on disk") in found
    assert ("model.ssd.num_classes", f"num_classes is 1 but the label map '{tmp_path / 'label_map.pbtxt'}' "
            "has 2 classes with ids up to 3: boxes of the ids above 1 would train as background; "
            "set num_classes to 3") in found
    assert ("train_config.fine_tune_checkpoint", f"fine-tune checkpoint '{tmp_path / 'nothing.h5'}' does not exist "
            "(a detection checkpoint prefix such as .../ckpt-0, a model_dir holding one, or a zoo model's folder "
            "holding checkpoint/ckpt-0)") in found
