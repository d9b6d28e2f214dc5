"""Saved configs: versions in SQLite, edits on every shared config, validation against a
dataset version, fill from a dataset version, the form's fields."""
from __future__ import annotations


import pytest

from backend import config_check, config_doctor, config_document as pc, dataset_versions, saved_configs
from backend.auth import CLI_ACTOR
from backend.errors import Invalid
from tests.helpers import SHARED_TFOD, needs_shared_tfod
from tests.helpers import CONFIG, make_dataset_version

SHARED = SHARED_TFOD / "configs"
CONFIGS = sorted(SHARED.glob("*.config"))
FPNLITE = SHARED / "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config"


@pytest.fixture
def version(db, project, data_dir):
    return dataset_versions.get_version(db, make_dataset_version(db, project, data_dir))


def changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    old_lines, new_lines = old.splitlines(), new.splitlines()
    assert len(old_lines) == len(new_lines)
    return [(a, b) for a, b in zip(old_lines, new_lines) if a != b]


@needs_shared_tfod
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_fill_from_dataset_version_changes_only_paths_and_num_classes_in_every_shared_config(path, version):
    text = path.read_text(encoding="utf-8")
    filled = saved_configs.fill_from_dataset_version(text, version)
    doc = pc.ConfigDocument(filled)
    arch = doc.tree.one("model").fields[0].name
    assert doc.get(f"model.{arch}.num_classes") == 3
    assert doc.get("train_input_reader.tf_record_input_reader.input_path") == version.train_glob
    assert doc.get("eval_input_reader.tf_record_input_reader.input_path") == version.eval_glob
    assert doc.get("train_input_reader.label_map_path") == str(version.label_map_path)
    for old, new in changed_lines(text, filled):
        assert old.split(":")[0] == new.split(":")[0]  # same field on the same line, new value
        assert old.split(":")[0].strip() in ("num_classes", "input_path", "label_map_path")
    assert saved_configs.fill_from_dataset_version(filled, version) == filled
    assert pc.parse(pc.ConfigDocument(filled).text) == doc.tree


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_edits_by_path_round_trip_on_every_shared_config(path):
    text = path.read_text(encoding="utf-8")
    doc = pc.ConfigDocument(text)
    doc.set("train_config.batch_size", 4)
    doc.set("train_config.num_steps", 1234)
    again = pc.ConfigDocument(doc.text)
    assert again.get("train_config.batch_size") == 4 and again.get("train_config.num_steps") == 1234
    assert [b.strip() for _, b in changed_lines(text, doc.text)] == ["batch_size: 4", "num_steps: 1234"]
    assert saved_configs.diff(text, doc.text).count("\n+ ") == 2


def test_syntax_error_is_one_problem_with_line_and_column():
    problems = config_check.check("model {\n  ssd {\n    num_classes: 3\n  }\n}\ntrain_config { batch_size: }\n",
                                actor=CLI_ACTOR)
    assert len(problems) == 1
    assert problems[0].line == 6 and "line 6, column" in problems[0].message


def test_valid_filled_config_has_no_problems(version):
    filled = saved_configs.fill_from_dataset_version(CONFIG, version)
    assert config_check.check(filled, version, actor=CLI_ACTOR, external=True) == []


def test_num_classes_below_the_label_maps_ids_is_a_problem_with_its_line(version):
    filled = saved_configs.fill_from_dataset_version(CONFIG, version).replace("num_classes: 3", "num_classes: 2")
    problems = config_check.check(filled, version, actor=CLI_ACTOR, external=True)
    assert [(p.path, p.line) for p in problems] == [("model.ssd.num_classes", 5)]
    assert problems[0].message == (f"num_classes is 2 but the label map {str(version.label_map_path)!r} has 3 "
                                   "classes with ids up to 3: boxes of the ids above 2 would train as "
                                   "background; set num_classes to 3")


def test_num_classes_above_the_label_maps_ids_trains_and_the_doctor_offers_the_fix(version):
    """As in the OD API, a zoo config's num_classes: 90 trains on a 3-class label map (87 outputs
    never see a box); the check passes it and the doctor says so, with the fix."""
    filled = saved_configs.fill_from_dataset_version(CONFIG, version).replace("num_classes: 3", "num_classes: 90")
    assert config_check.check(filled, version, actor=CLI_ACTOR, external=True) == []
    found = [f for f in config_doctor.examine(filled, version).findings if "num_classes" in f.numbers]
    assert [(f.severity, f.numbers, f.fix) for f in found] == [
        ("warning", {"num_classes": 90, "largest_id": 3}, {"model.ssd.num_classes": 3})]
    assert found[0].message.startswith("num_classes is 90 but the dataset's label ids go up to 3: 87 class outputs")
    fixed = config_doctor.apply_fix(filled, found[0].fix)
    assert not [f for f in config_doctor.examine(fixed, version).findings if "num_classes" in f.numbers]


def test_missing_and_broken_label_maps_are_reported(version, tmp_path):
    filled = saved_configs.fill_from_dataset_version(CONFIG, version)
    broken = tmp_path / "broken.pbtxt"
    broken.write_text("item { id: 1 name: 'cat' \n")
    text = pc.ConfigDocument(filled)
    text.set("train_input_reader.label_map_path", str(tmp_path / "missing.pbtxt"))
    text.set("eval_input_reader.label_map_path", str(broken))
    problems = config_check.check(text.text, version, actor=CLI_ACTOR, external=True)
    messages = {p.path: p.message for p in problems}
    assert "does not exist" in messages["train_input_reader.label_map_path"]
    assert "does not parse" in messages["eval_input_reader.label_map_path"]


def test_input_globs_must_match_shards_of_the_dataset_version(version, tmp_path):
    doc = pc.ConfigDocument(saved_configs.fill_from_dataset_version(CONFIG, version))
    doc.set("train_input_reader.tf_record_input_reader.input_path", str(tmp_path / "nope.record-?????-of-00002"))
    elsewhere = tmp_path / "other.record-00000-of-00001"
    elsewhere.write_bytes(b"")
    doc.set("eval_input_reader.tf_record_input_reader.input_path", str(elsewhere))
    problems = {p.path: p for p in config_check.check(doc.text, version, actor=CLI_ACTOR, external=True)}
    assert "matches no TFRecord shard" in problems["train_input_reader.tf_record_input_reader.input_path"].message
    assert problems["train_input_reader.tf_record_input_reader.input_path"].line == 18
    assert "is not a shard of dataset version" in problems["eval_input_reader.tf_record_input_reader.input_path"].message


def test_schedule_and_fine_tune_checkpoint_are_checked(version, tmp_path):
    doc = pc.ConfigDocument(saved_configs.fill_from_dataset_version(CONFIG, version))
    prefix = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate"
    doc.set(f"{prefix}.warmup_steps", 500)
    doc.set(f"{prefix}.warmup_learning_rate", 0.1)
    doc.set("train_config.fine_tune_checkpoint", str(tmp_path / "ckpt-9"))
    messages = [str(p) for p in config_check.check(doc.text, version, actor=CLI_ACTOR, external=True)]
    assert any("total_steps (100) must be ≥ warmup_steps (500)" in m for m in messages)
    assert any("learning_rate_base (0.04) must be ≥ warmup_learning_rate (0.1)" in m for m in messages)
    assert any(m.startswith("line 15: train_config.fine_tune_checkpoint") and "does not exist" in m
               for m in messages)
    (tmp_path / "ckpt-9.index").write_bytes(b"")
    assert not any("fine_tune_checkpoint" in m for m in map(str, config_check.check(doc.text, version, actor=CLI_ACTOR, external=True)))


@needs_shared_tfod
def test_the_boxwise_trainer_flags_unsupported_meta_architectures(version):
    text = (SHARED / "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config").read_text()
    problems = config_check.check(saved_configs.fill_from_dataset_version(text, version), version, actor=CLI_ACTOR)
    arch = [p for p in problems if p.path == "model.faster_rcnn"]
    assert arch and arch[0].line > 0 and "faster_rcnn is not supported" in arch[0].message
    # An external TF OD API runner trains it: no meta-architecture problem then.
    assert not [p for p in config_check.check(saved_configs.fill_from_dataset_version(text, version), version,
                                            actor=CLI_ACTOR, external=True) if p.path.startswith("model.")]


@pytest.mark.parametrize("name", ["default", "quick", "zoo_gpu"])
def test_templates_filled_from_a_dataset_version_are_valid(name, version):
    text = saved_configs.templates()[name]
    assert "PATH_TO_BE_CONFIGURED" in text
    assert config_check.check(saved_configs.fill_from_dataset_version(text, version), version, actor=CLI_ACTOR) == []


def recipe(size: int, anchor_scale: float, batch: int, steps: int, optimizer: str, base: float,
           warmup_rate: float, warmup_steps: int) -> dict:
    """A template's measured values by config path (cosine total_steps == num_steps)."""
    cosine = f"train_config.optimizer.{optimizer}.learning_rate.cosine_decay_learning_rate"
    return {"model.ssd.image_resizer.fixed_shape_resizer.height": size,
            "model.ssd.image_resizer.fixed_shape_resizer.width": size,
            "model.ssd.feature_extractor.depth_multiplier": 1.0,
            "model.ssd.anchor_generator.multiscale_anchor_generator.anchor_scale": anchor_scale,
            "train_config.batch_size": batch, "train_config.num_steps": steps,
            f"{cosine}.learning_rate_base": base, f"{cosine}.total_steps": steps,
            f"{cosine}.warmup_learning_rate": warmup_rate, f"{cosine}.warmup_steps": warmup_steps}


# quick and default: measured on the demo project, BENCHMARKS.md "Templates (issue 11 item 5)"
QUICK_CHOSEN = recipe(128, 2.0, 8, 2000, "adam_optimizer", 0.004, 0.0004, 100)
DEFAULT_CHOSEN = recipe(256, 4.0, 8, 2000, "adam_optimizer", 0.004, 0.0004, 100)
# the zoo ssd_mobilenet_v2_fpnlite_320x320 recipe, kept for GPU users
ZOO_GPU_RECIPE = {**recipe(320, 4.0, 16, 25000, "momentum_optimizer", 0.04, 0.013333, 1000),
                  "train_config.optimizer.momentum_optimizer.momentum_optimizer_value": 0.9}


def test_the_quick_template_holds_the_measured_recipe():
    doc = pc.ConfigDocument(saved_configs.templates()["quick"])
    assert {path: doc.get(path) for path in QUICK_CHOSEN} == QUICK_CHOSEN


@pytest.mark.parametrize("name,chosen", [("default", DEFAULT_CHOSEN), ("zoo_gpu", ZOO_GPU_RECIPE)])
def test_the_default_and_zoo_gpu_templates_hold_their_recipes(name, chosen):
    doc = pc.ConfigDocument(saved_configs.templates()[name])
    assert {path: doc.get(path) for path in chosen} == chosen


@pytest.mark.parametrize("name,optimizer", [("default", "adam_optimizer"), ("quick", "adam_optimizer"),
                                            ("zoo_gpu", "momentum_optimizer")])
def test_each_template_decays_its_learning_rate_to_zero_at_its_last_step(name, optimizer):
    doc = pc.ConfigDocument(saved_configs.templates()[name])
    cosine = doc.get(f"train_config.optimizer.{optimizer}.learning_rate.cosine_decay_learning_rate.total_steps")
    warmup = doc.get(f"train_config.optimizer.{optimizer}.learning_rate.cosine_decay_learning_rate.warmup_steps")
    assert cosine == doc.get("train_config.num_steps") and 0 < warmup < cosine


@needs_shared_tfod
def test_common_fields_and_augmentations_edit_only_their_lines():
    text = FPNLITE.read_text()
    values = saved_configs.common_fields(text)
    assert values["model.ssd.num_classes"] == 90 and values["train_config.batch_size"] == 128
    assert values["augmentations"] == ["random_horizontal_flip", "random_crop_image"]
    edited = saved_configs.set_common_fields(text, {**values, "train_config.batch_size": 8,
                                              "augmentations": ["random_crop_image", "random_adjust_brightness"]})
    doc = pc.ConfigDocument(edited)
    assert doc.get("train_config.batch_size") == 8
    assert saved_configs.common_fields(edited)["augmentations"] == ["random_crop_image", "random_adjust_brightness"]
    assert doc.get("train_config.data_augmentation_options[0].random_crop_image.min_area") == 0.75
    assert doc.get("model.ssd.num_classes") == 90
    assert "# SSD with Mobilenet v2 FPN-lite" in edited


def test_saved_configs_are_versioned_by_name(db, project, users):
    first = saved_configs.save_config(db, users["reviewer"], project["id"], "fpnlite", CONFIG)
    second = saved_configs.save_config(db, users["admin"], project["id"], "fpnlite", CONFIG + "# edited\n")
    other = saved_configs.save_config(db, users["admin"], project["id"], "quick", CONFIG)
    assert (first["version"], second["version"], other["version"]) == (1, 2, 1)
    assert saved_configs.get_config(db, first["id"])["text"] == CONFIG
    assert second["created_by_name"] == "admin"
    assert [(c["name"], c["version"]) for c in saved_configs.list_configs(db, project["id"])] == [("fpnlite", 2), ("quick", 1)]
    assert [c["version"] for c in saved_configs.config_versions(db, project["id"], "fpnlite")] == [2, 1]


def test_saving_needs_the_train_right_and_valid_syntax(db, project, users):
    with pytest.raises(PermissionError):
        saved_configs.save_config(db, users["labeler"], project["id"], "x", CONFIG)
    with pytest.raises(pc.ConfigSyntaxError) as error:
        saved_configs.save_config(db, users["reviewer"], project["id"], "x", "model { ssd {\n")
    assert error.value.line == 2
    with pytest.raises(Invalid):
        saved_configs.save_config(db, users["reviewer"], project["id"], " ", CONFIG)
    assert saved_configs.list_configs(db, project["id"]) == []


def test_config_check_command_checks_against_a_dataset_version(db, version, tmp_path, capsys):
    from backend.__main__ import main
    path = tmp_path / "pipeline.config"
    path.write_text(saved_configs.templates()["quick"])
    assert main(["config", "check", str(path), "--dataset-version", str(version.id)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: line 8: model.ssd.num_classes: num_classes is 1 but dataset version {version.id} has 3 classes" in out
    path.write_text(saved_configs.fill_from_dataset_version(path.read_text(), version))
    assert main(["config", "check", str(path), "--dataset-version", str(version.id)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{path}: ok"


def test_form_fields_follow_the_optimizer_of_the_config():
    quick = saved_configs.templates()["quick"]
    values = saved_configs.common_fields(quick)
    base = "train_config.optimizer.adam_optimizer.learning_rate.cosine_decay_learning_rate.learning_rate_base"
    assert values[base] == 0.004
    edited = saved_configs.set_common_fields(quick, {**values, base: "0.002"})
    assert pc.ConfigDocument(edited).get(base) == 0.002
    assert [b.strip() for _, b in changed_lines(quick, edited)] == ["learning_rate_base: 0.002"]
