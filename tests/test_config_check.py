"""The one config check (`backend.config_check.check`): the same bad configs through the four
places that check a config (the Configs page's Validate button, `config check FILE --dataset-version N`,
launching a run, `python -m backend train`) give the same problems; checking imports neither
TensorFlow nor Keras."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend import config_check, dataset_versions, paths, run_lifecycle, saved_configs
from backend.errors import Invalid
from backend.config_document import ConfigDocument
from backend.training.templates import template_text
from pages.common import plain
from tests.helpers import button, make_dataset_version, signed_in

REPO = Path(__file__).resolve().parents[1]
COSINE = "train_config.optimizer.adam_optimizer.learning_rate.cosine_decay_learning_rate"
PASCAL = ("item { id: 0 name: 'none_of_the_above' }\nitem { id: 1 name: 'cat' }\n"
          "item { id: 2 name: 'dog' }\nitem { id: 3 name: 'bird' }\n")


def _typo(doc, version):
    doc.set("train_config.batch_size", 4)
    return doc.text.replace("  batch_size: 4", "  batch_sise: 4", 1)


def _pascal_and_warmup_past_total(doc, version):
    # The Pascal VOC label map's `id: 0` background item is skipped by the one label-map reader,
    # so only the schedule is wrong here.
    version.label_map_path.write_text(PASCAL)
    doc.set(f"{COSINE}.warmup_steps", 3000)
    return doc.text


def _total_below_num_steps(doc, version):
    doc.set(f"{COSINE}.total_steps", 1500)
    return doc.text


def _warmup_past_total(doc, version):
    doc.set(f"{COSINE}.warmup_steps", 2500)
    return doc.text


def _shard_not_a_record(doc, version):
    shard = sorted(version.path.glob("train.record-*"))[0]
    shard.write_bytes(b"not a TFRecord at all")
    return doc.text


def _num_classes_and_typo(doc, version):
    doc.set("model.ssd.num_classes", 2)
    return _typo(doc, version)


CASES = {
    "a typo in a field name": (_typo, [
        "line {batch_sise}: train_config.batch_sise: unknown field \"batch_sise\": TrainConfig has no such "
        "field; did you mean \"batch_size\"?"]),
    "a Pascal label map with id 0, warmup past total": (_pascal_and_warmup_past_total, [
        "line {total_steps}: " + COSINE + ".total_steps: total_steps (2000) must be ≥ warmup_steps (3000)"]),
    "cosine total_steps below num_steps": (_total_below_num_steps, [
        "line {total_steps}: " + COSINE + ".total_steps: total_steps (1500) < train_config.num_steps (2000): "
        "the cosine schedule's learning rate is 0 after step 1500, so the last 500 steps do not train; "
        "set total_steps to 2000"]),
    "warmup past total": (_warmup_past_total, [
        "line {total_steps}: " + COSINE + ".total_steps: total_steps (2000) must be ≥ warmup_steps (2500)"]),
    "an input shard that is not a TFRecord": (_shard_not_a_record, [
        "line {input_path}: train_input_reader.tf_record_input_reader.input_path: '{shard}' is not a TFRecord "
        "file ({why})"]),
    "num_classes against the label map, and a typo": (_num_classes_and_typo, [
        "line {batch_sise}: train_config.batch_sise: unknown field \"batch_sise\": TrainConfig has no such "
        "field; did you mean \"batch_size\"?",
        "line {num_classes}: model.ssd.num_classes: num_classes is 2 but the label map '{label_map}' has 3 "
        "classes with ids up to 3: boxes of the ids above 2 would train as background; set num_classes to 3"]),
}


@pytest.fixture
def case_config(request, db, project, users, data_dir, tmp_path):
    """The quick template filled from a dataset version, broken as the case says, saved as a
    config and as a file; returns everything the four entry points need."""
    export_id = make_dataset_version(db, project, data_dir)
    version = dataset_versions.get_version(db, export_id)
    doc = ConfigDocument(saved_configs.fill_from_dataset_version(template_text("quick"), version))
    assert config_check.check(doc.text, version, actor=users["reviewer"]) == []  # the base is sound
    break_it, expected = CASES[request.param]
    text = break_it(doc, version)
    lines = {name: next(i for i, line in enumerate(text.splitlines(), 1) if line.strip().startswith(name + ":"))
             for name in ("batch_sise", "warmup_steps", "total_steps", "input_path", "num_classes")
             if any(line.strip().startswith(name + ":") for line in text.splitlines())}
    shard = sorted(version.path.glob("train.record-*"))[0]
    from backend.formats import tfrecord_framing
    expected = [e.format(**lines, shard=shard, why=tfrecord_framing.not_a_record_file(shard),
                         label_map=version.label_map_path) for e in expected]
    path = tmp_path / "pipeline.config"
    path.write_text(text)
    saved = saved_configs.save_config(db, users["reviewer"], project["id"], "case", text)
    return {"text": text, "path": path, "version": version, "config_id": saved["id"], "expected": expected,
            "project_id": project["id"], "admin": users["admin"], "reviewer": users["reviewer"],
            "data_dir": data_dir, "case": request.param}


def _cli(args, data_dir, timeout=120):
    env = {**os.environ, "BOXWISE_DATA": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _listed(message: str) -> list[str]:
    """The problems of a refusal listed as `- problem` lines."""
    return [line[2:] for line in message.splitlines() if line.startswith("- ")]


@pytest.mark.parametrize("case_config", list(CASES), indirect=True)
def test_the_configs_page_config_check_and_run_launch_give_the_same_problems(db, case_config):
    c = case_config
    at = signed_in(db, "reviewer", "pages/config.py")
    at.text_area(key="config_text").set_value(c["text"]).run()
    assert at.selectbox(key="config_version").value.id == c["version"].id
    button(at, "Validate").click().run()
    assert not at.exception, at.exception
    # (the page shows a reviewer the paths relative to the data folder, as Markdown source: `_` escaped)
    assert _listed(at.error[0].value) == [plain(paths.shown_in(c["reviewer"], e)) for e in c["expected"]]

    out = _cli(["config", "check", str(c["path"]), "--dataset-version", str(c["version"].id), "--json"],
               c["data_dir"])
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    cli = [f"line {p['line']}: {p['path']}: {p['message']}" for p in report["problems"]]
    assert cli == c["expected"]

    with pytest.raises(Invalid) as refused:
        run_lifecycle.start_run(db, c["admin"], c["project_id"], export_id=c["version"].id, config_id=c["config_id"])
    launched = _listed(str(refused.value))
    if c["case"].startswith("num_classes"):
        # A launch fills num_classes, label maps and inputs from the dataset version: what it
        # checks is the text after that, so the num_classes problem is gone.
        assert launched == [e for e in c["expected"] if "num_classes" not in e]
    else:
        assert launched == c["expected"]
    assert db["runs"].count == 0


@pytest.mark.slow
@pytest.mark.parametrize("case_config", list(CASES), indirect=True)
def test_the_trainer_refuses_the_same_configs_with_the_same_problems(case_config, tmp_path):
    c = case_config
    out = _cli(["train", "--pipeline_config_path", str(c["path"]), "--model_dir", str(tmp_path / "model")],
               c["data_dir"], timeout=300)
    assert out.returncode != 0
    # Without a dataset version the trainer checks the same text: the same problems.
    assert _listed(out.stderr + out.stdout) == c["expected"], out.stderr[-2000:]
    assert not list((tmp_path / "model").glob("ckpt-*"))


def test_checking_a_config_imports_neither_tensorflow_nor_keras(tmp_path):
    config = tmp_path / "pipeline.config"
    config.write_text(template_text("quick"))
    code = ("import sys\nfrom backend import config_check\n"
            f"problems = config_check.check(open({str(config)!r}).read())\n"
            "assert problems, 'the template names PATH_TO_BE_CONFIGURED inputs'\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


def test_every_ignored_field_is_a_schema_field_with_a_reason_and_is_not_also_supported():
    from backend import pipeline_schema
    from backend.pipeline_schema.ignored import IGNORED

    assert len(IGNORED) == 45
    for path, reason in IGNORED.items():
        assert pipeline_schema.descriptor(path) is not None, path
        assert len(reason) >= 8, path
        assert not config_check._matches(path, config_check.SUPPORTED), path


def test_input_reader_tuning_is_listed_as_ignored_with_its_reason_not_refused():
    text = template_text("quick").replace("train_input_reader {", "train_input_reader {\n  num_prefetch_batches: 4", 1)
    assert config_check.check(text, files=False) == []
    line = text.splitlines().index("  num_prefetch_batches: 4") + 1
    reason = config_check.IGNORED_REASONS["train_input_reader.num_prefetch_batches"]
    assert ("train_input_reader.num_prefetch_batches", line, reason) in config_check.ignored(text)
    assert "they change speed, not which examples are read" in reason


def test_the_input_readers_order_fields_are_supported_not_ignored():
    text = template_text("quick").replace("train_input_reader {", "train_input_reader {\n  num_readers: 4", 1)
    assert config_check.check(text, files=False) == []
    assert [path for path, *_ in config_check.ignored(text) if "num_readers" in path] == []


def test_each_unreadable_label_map_is_one_problem_worded_by_the_one_label_map_reader(tmp_path):
    from backend.auth import CLI_ACTOR
    from backend.config_document import ConfigSyntaxError
    from backend.errors import NotFound
    from backend.formats import label_map

    files = {"missing": tmp_path / "missing.pbtxt", "folder": tmp_path / "folder.pbtxt",
             "binary": tmp_path / "binary.pbtxt", "syntax": tmp_path / "syntax.pbtxt",
             "only background": tmp_path / "background.pbtxt"}
    files["folder"].mkdir()
    files["binary"].write_bytes(b"\xff\xfe\x00item")
    files["syntax"].write_text("item {\n  hunter2secret\n}\n")
    files["only background"].write_text("item { id: 0 name: 'none_of_the_above' }\n")
    with pytest.raises(NotFound, match=f"^label map '{files['missing']}' does not exist$"):
        label_map.read(files["missing"])
    with pytest.raises(Invalid, match=f"^{files['binary']}: not a UTF-8 text file; is this a label map\\?$"):
        label_map.read(files["binary"])
    with pytest.raises(Invalid, match=f"^cannot read label map {files['folder']}: Is a directory$"):
        label_map.read(files["folder"])
    with pytest.raises(ConfigSyntaxError) as syntax:
        label_map.read(files["syntax"])
    assert (syntax.value.line, syntax.value.column, syntax.value.source) == (3, 1, str(files["syntax"]))
    with pytest.raises(Invalid, match=f"^{files['only background']}: no items with an id >= 1$"):
        label_map.read(files["only background"])

    expected = {
        "missing": f"label map '{files['missing']}' does not exist",
        "folder": f"cannot read label map {files['folder']}: Is a directory",
        "binary": f"{files['binary']}: not a UTF-8 text file; is this a label map?",
        "syntax": f"label map '{files['syntax']}' does not parse (line 3, column 1)",  # never its text
        "only background": f"{files['only background']}: no items with an id >= 1",
        "NUL": "label map 'a\\x00b' is not a usable path (it contains a NUL character)",
    }
    for case, message in expected.items():
        value = "a\\000b" if case == "NUL" else str(files[case])
        text = template_text("quick").replace('label_map_path: "PATH_TO_BE_CONFIGURED/label_map.pbtxt"',
                                              f'label_map_path: "{value}"')
        found = [(p.path, p.message) for p in config_check.check(text, actor=CLI_ACTOR)
                 if p.path.endswith("label_map_path")]
        assert found == [("train_input_reader.label_map_path", message)], case
