"""Every page a viewer and a reviewer have shows the server paths inside the data folder relative
to it (`paths.shown_in`), whatever held them: a saved config filled from a dataset version, a
run's error and its doctor warnings, a model's folder and warnings, a starting point's
checkpoint check, batch prediction's progress, an extraction problem in the TFRecord
browser. The Configs page shows an admin the paths whole."""
from __future__ import annotations

import json
import time

import pytest

from backend import atomic, dataset_versions, predictions, run_lifecycle, saved_configs
from tests.helpers import CONFIG, add_image, signed_in

# Every page a viewer or a reviewer has (app.PAGES, by the action each needs).
PAGES = ["home", "label", "review", "dashboard", "upload", "dataset", "tfrecords", "config", "runs", "models", "zoo",
         "predict", "projects", "account"]


def _naming(at, text: str) -> list[str]:
    """What on the page holds `text`: each element whose message (dataframes as their Arrow
    bytes) or current text value contains it, by type, with the text around it."""
    found = []
    for node in at._tree:
        proto = getattr(node, "proto", None)
        parts = [proto.SerializeToString().decode("utf-8", "replace")] if proto is not None else []
        try:
            value = node.value  # a picker's value is the server-side object: its label is in the proto
        except Exception:  # noqa: BLE001 - a block, or an element without a value
            value = None
        if isinstance(value, str):
            parts.append(value)
        for part in parts:
            if text in part:
                at_ = part.find(text)
                found.append(f"{type(node).__name__}: …{part[max(0, at_ - 60):at_ + 120]}…")
    return found


@pytest.fixture
def stocked(db, users, project, data_dir):
    """A dataset version, a config filled from it, a failed run, a model and a starting point
    whose texts name files in the data folder, and a failed batch prediction."""
    admin = users["admin"]
    add_image(db, admin, project["id"], "a.jpg", boxes=[("cat", 1, 2, 30, 40)])
    version = dataset_versions.create_export(db, admin, project["id"], splits="train=1")
    text = saved_configs.set_fine_tune_checkpoint(saved_configs.fill_from_dataset_version(CONFIG, version),
                                                  str(data_dir / "checkpoints" / "ckpt-1"))
    config = saved_configs.save_config(db, admin, project["id"], "filled", text)
    run = run_lifecycle._insert_run(db, admin, project["id"], kind="train", text=text, export_id=version.id,
                                    config_id=config["id"])
    db["runs"].update(run["id"], {
        "status": "failed", "finished_at": time.time(),
        "error": f"the trainer could not read {version.label_map_path}",
        "doctor_warnings": json.dumps([{"message": f"anchors of {data_dir}/exports cover 10 % of the boxes"}])})
    folder = data_dir / "models" / "m1"
    db["models"].insert({"project_id": project["id"], "name": "m1", "path": str(folder), "metrics": "{}",
                         "size_bytes": 0, "created_at": time.time(), "source": "folder",
                         "warnings": json.dumps([f"no label map beside {folder}/saved_model"])})
    db["starting_points"].insert({"name": "zoo1", "sha256": "0" * 64, "path": str(data_dir / "zoo" / "zoo1"),
                                  "filename": "zoo1.tar.gz", "architecture": "ssd", "height": 320, "width": 320,
                                  "num_classes": 90, "classes": json.dumps({"1": "person"}), "size_bytes": 0,
                                  "restore": json.dumps({"summary": f"{data_dir}/zoo/zoo1/checkpoint/ckpt-0: "
                                                                    "all variables restored"}),
                                  "created_at": time.time()})
    atomic.write_json(predictions.progress_path(project["id"]), {
        "state": "failed", "project_id": project["id"], "pid": None, "total": 1, "done": 1, "drafts": 0,
        "skipped": 0, "failed": 1, "message": f"cannot open {data_dir}/images/x.jpg",
        "errors": [{"image_id": 1, "filename": "a.jpg", "error": f"{data_dir}/images/a.jpg is truncated"}],
        "warnings": [f"model label map {folder}/label_map.pbtxt differs"]})
    return version


@pytest.mark.parametrize(("page", "role"), [(page, role) for page in PAGES for role in ("viewer", "reviewer")
                                            if role == "reviewer" or page not in ("label", "review", "upload")])
def test_no_page_shows_a_non_admin_where_the_data_folder_lies(db, users, project, data_dir, stocked, page, role):
    at = signed_in(db, role, f"pages/{page}.py")
    assert not at.exception, at.exception
    assert _naming(at, str(data_dir)) == []


def test_the_configs_page_shows_a_saved_configs_paths_relative_to_a_viewer_and_whole_to_an_admin(
        db, users, project, data_dir, stocked):
    relative = stocked.path.relative_to(data_dir)
    texts = {role: signed_in(db, role, "pages/config.py").text_area(key="config_text").value
             for role in ("viewer", "reviewer", "admin")}
    assert f'label_map_path: "{relative}/label_map.pbtxt"' in texts["viewer"]
    assert 'fine_tune_checkpoint: "checkpoints/ckpt-1"' in texts["viewer"]
    assert texts["viewer"] == texts["admin"].replace(f"{data_dir}/", "") == texts["reviewer"]
    assert f'label_map_path: "{stocked.label_map_path}"' in texts["admin"]


def test_a_reviewer_validates_and_saves_the_relative_text_the_page_shows(db, users, project, data_dir, stocked):
    from tests.helpers import button
    at = signed_in(db, "reviewer", "pages/config.py")
    (data_dir / "checkpoints").mkdir()
    (data_dir / "checkpoints" / "ckpt-1.index").write_bytes(b"x")
    button(at, "Validate").click().run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [] and [s.value for s in at.success] == [
        "The config has no problems with this dataset version."]
    at.text_input(key="config_name").input("mine")
    button(at, "Save as a new version").click().run()
    assert not at.exception, at.exception
    [saved] = saved_configs.config_versions(db, project["id"], "mine")
    assert 'fine_tune_checkpoint: "checkpoints/ckpt-1"' in saved["text"]
    assert str(data_dir) not in saved["text"]


def test_the_tfrecord_browser_opens_a_relative_path_and_shows_a_reviewer_extraction_problems_relative(
        db, users, data_dir, tmp_path, monkeypatch):
    from backend.formats import tf_example
    from tests.test_hostile_inputs import _record_file
    monkeypatch.chdir(tmp_path)  # not the data folder's parent: the typed path is read from the data folder
    (data_dir / "hostile").mkdir()
    _record_file(data_dir / "hostile" / "train.record",  # an example without image/encoded
                 [tf_example._entry("image/height", tf_example._int64_feature([30])),
                  tf_example._entry("image/width", tf_example._int64_feature([40]))])
    at = signed_in(db, "reviewer", "pages/tfrecords.py")
    at.radio[0].set_value("A path or glob on the server").run()
    at.text_input[0].input("hostile/train.record").run()
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["file"]) == ["hostile/train.record"]  # opened, and shown relative
    next(b for b in at.button if b.label == "Extract to zip").click().run()
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == ["hostile/train.record record 0: no image/encoded"]

