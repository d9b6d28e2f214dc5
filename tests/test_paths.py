"""No file outside the data folder is read, listed or echoed for a non-admin (issue 12, item 2):
every user-supplied path goes through `paths.confine`, and a refusal reads the same whether the
outside file exists or not."""
from __future__ import annotations

import json
import os

import pytest

from backend import config_check, dataset_versions, importers, record_browser
from backend.auth import CLI_ACTOR
from pages.common import plain
from tests.helpers import button, image_bytes, signed_in
from tests.helpers import CONFIG

SECRET = "hunter2secret\n"  # the old label-map parse error quoted it: "expected a value for 'hunter2secret'"


@pytest.fixture
def outside(tmp_path):
    """A secret file and an image outside the data folder, and a path that does not exist."""
    secret = tmp_path / "shadow"
    secret.write_text(SECRET)
    picture = tmp_path / "private.png"
    picture.write_bytes(image_bytes((40, 30), (1, 2, 3), fmt="PNG"))
    return {"secret": secret, "picture": picture, "missing": tmp_path / "no-such-file"}


def _config_with(label_map_path: str) -> str:
    return CONFIG.replace('label_map_path: "PATH_TO_BE_CONFIGURED"',
                          f'label_map_path: "{label_map_path}"', 1)


@pytest.mark.parametrize("role", ["viewer", "labeler", "reviewer"])
def test_config_validation_never_reads_or_echoes_an_outside_label_map(db, users, outside, role):
    found = {}
    for which in ("secret", "missing"):
        problems = config_check.check(_config_with(str(outside[which])), actor=users[role])
        [problem] = [p for p in problems if p.path == "train_input_reader.label_map_path"]
        found[which] = problem.message.replace(str(outside[which]), "PATH")
        assert "hunter2" not in str(problem)
    assert found["secret"] == found["missing"]  # the message does not tell which files exist
    assert "may not use the config path 'PATH'" in found["secret"]


def test_configs_page_validate_neither_quotes_nor_tells_existence_of_an_outside_file(db, users, project,
                                                                                    outside):
    at = signed_in(db, "viewer", "pages/config.py")
    shown = {}
    for which in ("secret", "missing"):
        at.text_area(key="config_text").input(_config_with(str(outside[which]))).run()
        button(at, "Validate").click().run()
        assert not at.exception, at.exception
        shown[which] = [e.value.replace(plain(str(outside[which])), "PATH") for e in at.error]  # (Markdown source)
        assert shown[which] and not any("hunter2" in e for e in shown[which])
    assert shown["secret"] == shown["missing"]


def test_config_validation_never_quotes_a_label_map_that_does_not_parse(db, users, data_dir):
    broken = data_dir / "broken.pbtxt"
    broken.write_text(SECRET)  # readable by the user (in the data folder), yet never quoted
    [problem] = [p for p in config_check.check(_config_with(str(broken)), actor=users["viewer"])
                 if p.path == "train_input_reader.label_map_path"]
    assert problem.message == f"label map '{broken}' does not parse (line 2, column 1)"
    assert "hunter2" not in problem.message


def test_the_database_and_settings_are_refused_inside_the_data_folder(db, users, data_dir):
    from backend import paths
    for name in ("boxwise.db", "settings.json"):
        with pytest.raises(PermissionError):
            paths.confine(data_dir / name, users["reviewer"], "label_map")
        with pytest.raises(PermissionError, match="the database and the server settings are never opened"):
            paths.confine(data_dir / name, users["admin"], "label_map")  # a browser admin neither
    assert paths.confine(data_dir / "boxwise.db", CLI_ACTOR, "label_map") == (data_dir / "boxwise.db").resolve()


def test_other_config_paths_and_a_run_checkpoint_are_confined(db, users, outside):
    doc = _config_with("PATH_TO_BE_CONFIGURED").replace(
        'input_path: "PATH_TO_BE_CONFIGURED"', f'input_path: "{outside["secret"]}"', 1)
    doc = doc.replace("train_config {", f'train_config {{\n  fine_tune_checkpoint: "{outside["secret"]}"', 1)
    problems = {p.path: p.message for p in config_check.check(doc, actor=users["viewer"])}
    refused = {path for path, message in problems.items() if "may not" in message}
    assert refused == {"train_input_reader.tf_record_input_reader.input_path", "train_config.fine_tune_checkpoint"}
    # the relative PATH_TO_BE_CONFIGURED of the label map and the eval reader: looked for in the data folder
    assert problems["train_input_reader.label_map_path"] == "label map 'PATH_TO_BE_CONFIGURED' does not exist"
    assert problems["eval_input_reader.tf_record_input_reader.input_path"] == (
        "'PATH_TO_BE_CONFIGURED' matches no TFRecord shard on disk")
    admin = {p.path for p in config_check.check(doc, actor=CLI_ACTOR) if "may not" in p.message}
    assert admin == set()


@pytest.mark.parametrize("file_name", ["ABSOLUTE", "../../private.png", "x/../../../private.png"])
def test_coco_import_cannot_copy_an_image_from_outside_the_data_folder(db, users, project, data_dir,
                                                                      outside, file_name):
    folder = data_dir / "incoming"
    folder.mkdir(parents=True)
    name = str(outside["picture"]) if file_name == "ABSOLUTE" else file_name
    assert (folder / name).resolve() == outside["picture"]  # the file is there, and readable
    (folder / "coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": name, "width": 40, "height": 30}],
        "annotations": [], "categories": [{"id": 1, "name": "cat"}]}))
    report = importers.import_annotations(db, users["reviewer"], project["id"], folder / "coco.json", "coco")
    assert not report.ok
    assert any("outside the folders you may read from" in e for e in report.errors), report.errors
    assert db["images"].count == 0 and not list(data_dir.glob("images/*/*"))


def test_a_refused_image_reference_does_not_tell_whether_the_file_exists(db, users, project, data_dir, outside):
    folder = data_dir / "incoming"
    folder.mkdir()
    errors = []
    for target in (outside["picture"], outside["missing"]):
        (folder / "coco.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": str(target), "width": 40, "height": 30}],
            "annotations": [], "categories": [{"id": 1, "name": "cat"}]}))
        report = importers.import_annotations(db, users["reviewer"], project["id"], folder / "coco.json", "coco")
        errors.append([e.replace(str(target), "PATH").replace(str(folder), "DIR") for e in report.errors])
    assert errors[0] == errors[1]


def test_voc_path_field_and_import_sources_outside_are_refused(db, users, project, data_dir, outside):
    folder = data_dir / "voc"
    folder.mkdir()
    (folder / "a.xml").write_text(f"<annotation><filename>nothere.png</filename><path>{outside['picture']}"
                                  "</path><size><width>40</width><height>30</height></size></annotation>")
    report = importers.import_annotations(db, users["reviewer"], project["id"], folder, "voc")
    assert not report.ok and db["images"].count == 0
    with pytest.raises(PermissionError, match="may not import from"):
        importers.import_annotations(db, users["reviewer"], project["id"], outside["picture"].parent, "coco")
    # A browser admin neither; the command line may import from anywhere on the server.
    with pytest.raises(PermissionError, match="may not import from"):
        importers.import_annotations(db, users["admin"], project["id"], outside["picture"].parent, "coco")
    assert not importers.import_annotations(db, users["admin"], project["id"], folder, "voc").ok
    assert db["images"].count == 0
    assert importers.import_annotations(db, CLI_ACTOR, project["id"], folder, "voc").ok
    assert db["images"].count == 1


def test_viewer_cannot_point_the_tfrecord_browser_at_an_outside_label_map(db, users, project, labeled,
                                                                         outside):
    version = dataset_versions.create_export(db, users["admin"], project["id"], splits="train=1")
    pattern = version.shard_globs["train"]
    assert record_browser.inspect(users["viewer"], pattern).examples == 6  # a dataset version: fine
    messages = []
    for which in ("secret", "missing"):
        for call in (lambda lm: record_browser.inspect(users["viewer"], pattern, lm),
                     lambda lm: record_browser.page(users["viewer"], pattern, 0, 2, lm),
                     lambda lm: record_browser.extract_zip(users["reviewer"], pattern, False, lm)):
            with pytest.raises(PermissionError) as refused:
                call(str(outside[which]))
            messages.append(str(refused.value).replace(str(outside[which]), "PATH"))
            assert "hunter2" not in str(refused.value)
    assert messages[:3] == messages[3:]


def test_a_glob_cannot_reach_outside_through_a_symlink(db, users, data_dir, outside):
    folder = data_dir / "uploads" / "tfrecords" / "linked"
    folder.mkdir(parents=True)
    os.symlink(outside["secret"], folder / "train.record-00000-of-00001")
    with pytest.raises(PermissionError, match="may not open the record set"):
        record_browser.inspect(users["viewer"], str(folder / "train.record-*"))
    with pytest.raises(PermissionError, match="may not open the record set"):
        record_browser.inspect(users["viewer"], str(folder))


def test_export_copy_to_outside_the_data_folder_needs_the_command_line(db, users, project, labeled, tmp_path):
    target = tmp_path / "elsewhere"
    for role in ("reviewer", "admin"):
        with pytest.raises(PermissionError, match="may not write a dataset version to"):
            dataset_versions.create_export(db, users[role], project["id"], splits="train=1", copy_to=target)
    assert not target.exists() and dataset_versions.list_versions(db, project["id"]) == []
    dataset_versions.create_export(db, CLI_ACTOR, project["id"], splits="train=1", copy_to=target)
    assert (target / "manifest.json").is_file()


def test_an_allowed_folder_opens_paths_there_to_every_role(users, tmp_path, monkeypatch):
    from backend import paths
    shared = tmp_path / "shared"
    shared.mkdir()
    with pytest.raises(PermissionError):
        paths.confine(shared / "a.record", users["viewer"], "records")
    monkeypatch.setenv("BOXWISE_ALLOWED_PATHS", str(shared))
    assert paths.confine(shared / "a.record", users["viewer"], "records") == (shared / "a.record").resolve()
    with pytest.raises(PermissionError):
        paths.confine(shared / ".." / "shadow", users["viewer"], "records")


def test_csv_image_paths_outside_are_refused_and_yolo_images_dir_too(db, users, project, data_dir, outside):
    folder = data_dir / "csv"
    folder.mkdir()
    (folder / "labels.csv").write_text(f"image_path,xmin,ymin,xmax,ymax,label\n{outside['picture']},1,2,30,20,cat\n")
    report = importers.import_annotations(db, users["reviewer"], project["id"], folder / "labels.csv", "csv")
    assert any("outside the folders you may read from" in e for e in report.errors), report.errors
    assert db["images"].count == 0
    (folder / "classes.txt").write_text("cat\n")
    with pytest.raises(PermissionError, match="may not import from"):
        importers.import_annotations(db, users["reviewer"], project["id"], folder, "yolo",
                                     images_dir=outside["picture"].parent)
