"""pipeline.config text: parse, edit by path, print back untouched lines byte for byte."""
from __future__ import annotations


import pytest

from backend import config_document as pc
from backend.errors import Invalid, NotFound

# The TF OD API configs shared beside the repository (../shared/tfod/configs, as in CI; skipped when absent).
from tests.helpers import SHARED_TFOD, needs_shared_tfod

SHARED = SHARED_TFOD / "configs"
CONFIGS = sorted(SHARED.glob("*.config"))
FPNLITE = SHARED / "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config"


@needs_shared_tfod
def test_every_shared_config_is_found():
    assert len(CONFIGS) >= 8


@needs_shared_tfod
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shared_config_round_trips(path, tmp_path):
    text = path.read_text(encoding="utf-8")
    doc = pc.ConfigDocument.load(path)
    assert doc.text == text
    copy = tmp_path / "copy.config"
    doc.save(copy)
    assert copy.read_bytes() == path.read_bytes()
    assert pc.parse(doc.text) == doc.tree
    assert pc.parse(doc.text).to_python() == doc.tree.to_python()


@needs_shared_tfod
def test_values_have_their_types():
    doc = pc.ConfigDocument.load(FPNLITE)
    assert doc.get("model.ssd.num_classes") == 90
    assert doc.get("model.ssd.box_predictor.weight_shared_convolutional_box_predictor."
                   "class_prediction_bias_init") == -4.6
    assert doc.get("model.ssd.anchor_generator.multiscale_anchor_generator.aspect_ratios") == [1.0, 2.0, 0.5]
    assert doc.get("train_config.optimizer.momentum_optimizer.learning_rate."
                   "cosine_decay_learning_rate.learning_rate_base") == 0.08
    assert doc.get("model.ssd.post_processing.score_converter") == pc.Enum("SIGMOID")
    assert isinstance(doc.get("model.ssd.post_processing.score_converter"), pc.Enum)
    assert doc.get("train_config.sync_replicas") is True
    assert doc.get("train_config.fine_tune_checkpoint_type") == "classification"
    assert doc.get("train_config.data_augmentation_options[1].random_crop_image.min_area") == 0.75
    assert doc.line("model.ssd.num_classes") == 13


def test_syntax_forms_of_text_format():
    text = ("# comment\n"
        "a: { b: 'x' ; c: \"y\\\"z\", }\n"
        "l: [1, 2.5, -3e-2]\n"
        "e: RELU_6,\n"
        "r: 1\nr: 2\n"
        "m < n: true >\n")
    tree = pc.parse(text)
    assert tree.one("a").to_python() == {"b": "x", "c": 'y"z'}
    assert tree.one("l") == [1, 2.5, -0.03]
    assert tree.one("e") == "RELU_6" and isinstance(tree.one("e"), pc.Enum)
    assert tree.all("r") == [1, 2]
    assert tree.one("m").one("n") is True


@pytest.mark.parametrize("text,line,column", [
    ("a {\n  b: 1\n", 3, 1),
    ("a: \n", 2, 1),
    ("a {\n  b 1\n}\n", 2, 5),
    ("a: [1, 2\n", 2, 1),
    ("a: 'open\n", 1, 4),
    ("a: 1\n}\n", 2, 1),
    ("a: 1 @\n", 1, 6),
])
def test_syntax_error_names_line_and_column(text, line, column):
    with pytest.raises(pc.ConfigSyntaxError) as caught:
        pc.parse(text)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert isinstance(caught.value, Invalid)
    assert str(caught.value).startswith(f"line {line}, column {column}:")


@needs_shared_tfod
def test_set_changes_only_the_value_characters():
    original = FPNLITE.read_text()
    doc = pc.ConfigDocument.load(FPNLITE)
    doc.set("train_config.data_augmentation_options[1].random_crop_image.min_area", 0.5)
    doc.set("model.ssd.num_classes", 3)
    expected = original.replace("      min_area: 0.75\n", "      min_area: 0.5\n").replace(
        "    num_classes: 90\n", "    num_classes: 3\n")
    assert doc.text == expected
    assert doc.get("model.ssd.num_classes") == 3
    assert pc.parse(doc.text) == doc.tree


def test_set_literal_keeps_the_field_type():
    doc = pc.ConfigDocument(
        'r {\n  path: "old"  # keep me\n  n: 2\n  act: RELU\n  f: 1.0\n}\n')
    doc.set_literal("r.path", "/data/label map.pbtxt")
    doc.set_literal("r.n", "5")
    doc.set_literal("r.act", "RELU_6")
    doc.set_literal("r.f", "3")
    assert doc.text == ('r {\n  path: "/data/label map.pbtxt"  # keep me\n  n: 5\n'
                        '  act: RELU_6\n  f: 3.0\n}\n')
    with pytest.raises(Invalid):
        doc.set_literal("r.n", "many")


def test_set_creates_missing_fields_with_the_parent_indent():
    doc = pc.ConfigDocument("train_config {\n  batch_size: 4\n}\n")
    doc.set("train_config.optimizer.adam_optimizer.epsilon", 1e-7)
    doc.set("eval_config.batch_size", 1)
    assert doc.text == ("train_config {\n  batch_size: 4\n  optimizer {\n    adam_optimizer {\n"
                        "      epsilon: 1e-07\n    }\n  }\n}\neval_config {\n  batch_size: 1\n}\n")


def test_repeated_fields_by_index_add_and_remove():
    doc = pc.ConfigDocument(
        "t {\n  input_path: 'a'\n  input_path: 'b'\n  opt { flip {} }\n}\n")
    assert doc.get_all("t.input_path") == ["a", "b"]
    assert doc.get("t.input_path[1]") == "b"
    with pytest.raises(Invalid):
        doc.get("t.input_path")
    doc.set("t.input_path[0]", "c")
    doc.add("t.opt", {"crop": {"min_area": 0.5}})
    assert doc.get("t.opt[1].crop.min_area") == 0.5
    doc.remove("t.input_path[1]")
    assert doc.text == "t {\n  input_path: \"c\"\n  opt { flip {} }\n  opt {\n    crop {\n" \
                       "      min_area: 0.5\n    }\n  }\n}\n"
    with pytest.raises(NotFound):
        doc.get("t.nothing")


def test_list_items_are_addressed_by_index():
    doc = pc.ConfigDocument("aspect_ratios: [1.0, 2.0, 0.5]\n")
    doc.set("aspect_ratios[1]", 3.0)
    assert doc.text == "aspect_ratios: [1.0, 3.0, 0.5]\n"
    doc.set("aspect_ratios", [1.0, 2.0])
    assert doc.text == "aspect_ratios: [1.0, 2.0]\n"


@needs_shared_tfod
def test_config_cli_get_set_and_check(tmp_path, capsys):
    from backend.__main__ import main
    copy = tmp_path / "pipeline.config"
    copy.write_bytes(FPNLITE.read_bytes())
    assert main(["config", "get", str(copy), "model.ssd.num_classes"]) == 0
    assert capsys.readouterr().out == "90\n"
    assert main(["config", "set", str(copy), "model.ssd.num_classes=3",
                 "train_input_reader.label_map_path=/data/label_map.pbtxt",
                 "train_config.data_augmentation_options[1].random_crop_image.min_area=0.5"]) == 0
    expected = FPNLITE.read_text().replace("num_classes: 90", "num_classes: 3").replace(
        '  label_map_path: "PATH_TO_BE_CONFIGURED/label_map.txt"\n  tf_record_input_reader {\n'
        '    input_path: "PATH_TO_BE_CONFIGURED/train2017',
        '  label_map_path: "/data/label_map.pbtxt"\n  tf_record_input_reader {\n'
        '    input_path: "PATH_TO_BE_CONFIGURED/train2017').replace("min_area: 0.75", "min_area: 0.5")
    assert copy.read_text() == expected
    assert main(["config", "get", str(copy), "train_input_reader.label_map_path"]) == 0
    assert capsys.readouterr().out == "/data/label_map.pbtxt\n"
    assert main(["config", "check", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "train_input_reader.tf_record_input_reader.input_path: " \
           "'PATH_TO_BE_CONFIGURED/train2017-?????-of-00256.tfrecord' matches no TFRecord shard on disk" in out
    assert "line 145: train_config.sync_replicas: ignored" in out

    rcnn = SHARED / "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config"
    assert main(["config", "check", str(rcnn)]) == 1
    assert f"{rcnn}: line 9: model.faster_rcnn: this trainer implements" in capsys.readouterr().out
    broken = tmp_path / "broken.config"
    broken.write_text("model {\n  ssd {\n    num_classes 3\n  }\n}\n")
    assert main(["config", "check", str(broken)]) == 1
    assert capsys.readouterr().out == f"{broken}: line 3, column 17: expected ':' or '{{' after 'num_classes'\n"


def test_get_or_gives_the_default_for_an_absent_or_ambiguous_path_and_get_raises():
    doc = pc.ConfigDocument("model { ssd { num_classes: 3 } }\nitem { id: 1 }\nitem { id: 2 }\n")
    assert doc.get_or("model.ssd.num_classes", 90) == 3
    assert doc.get_or("model.ssd.image_resizer", "absent") == "absent"
    assert doc.get_or("model.ssd.num_classes.depth") is None  # a value has no fields
    assert doc.get_or("item.id", 0) == 0 and doc.get_or("item[1].id") == 2
    with pytest.raises(NotFound):
        doc.get("model.ssd.image_resizer")
    with pytest.raises(Invalid, match="repeated 2 times"):
        doc.get("item.id")


def test_loading_a_file_that_is_missing_binary_a_folder_or_no_path_is_one_domain_error(tmp_path):
    (tmp_path / "binary.config").write_bytes(b"\xff\xfe\x00model")
    with pytest.raises(NotFound, match="^config file '.*missing.config' does not exist$"):
        pc.ConfigDocument.load(tmp_path / "missing.config")
    with pytest.raises(Invalid, match=r"binary.config: not a UTF-8 text file; is this a pipeline.config\?$"):
        pc.ConfigDocument.load(tmp_path / "binary.config")
    with pytest.raises(Invalid, match=f"^cannot read config file {tmp_path}: Is a directory$"):
        pc.ConfigDocument.load(tmp_path)
    with pytest.raises(Invalid, match=r"^config file 'a\\x00b' is not a usable path \(it contains a NUL character\)$"):
        pc.ConfigDocument.load("a\0b")  # a ValueError from the file system before
