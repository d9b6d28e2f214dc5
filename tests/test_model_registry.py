"""The model registry with real SavedModels on disk and a real SQLite file."""
from __future__ import annotations

import io
import json
import shutil
import zipfile

import pytest

from backend import model_registry, projects
from backend.errors import Invalid, NotFound
from backend.inference import ModelInvalid
from backend.auth import CLI_ACTOR
from tests import savedmodels


def _zip(folder, prefix="") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, prefix + str(path.relative_to(folder)))
    return out.getvalue()


def test_registering_a_directory_records_label_map_size_and_metrics(db, admin, project, export_dir, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(export_dir, folder)
    (folder / "metrics.json").write_text(json.dumps({"DetectionBoxes_Precision/mAP": 0.42}))
    model = model_registry.register_directory(db, CLI_ACTOR, project["id"], folder, name="first try")
    assert model["name"] == "first try"
    assert model["path"] == str(folder.resolve())
    assert model["source"] == "directory"
    assert model["label_map"] == savedmodels.LABEL_MAP
    assert model["metrics"] == {"DetectionBoxes_Precision/mAP": 0.42}
    assert model["warnings"] == []
    assert model["size_bytes"] == sum(p.stat().st_size for p in (folder / "saved_model").rglob("*")
                                      if p.is_file())
    assert model["available"] is True and model["is_current"] is False
    assert model_registry.label_map_names(model) == {1: "cat", 2: "dog"}


def test_a_model_without_label_map_is_registered_with_a_warning(db, admin, project, tmp_path):
    folder = savedmodels.build_detector(tmp_path / "bare", label_map=None, layout="bare")
    model = model_registry.register_directory(db, CLI_ACTOR, project["id"], folder)
    assert model["name"] == "bare"
    assert model["label_map"] == ""
    assert model["warnings"] == ["no label map beside this model: classes are shown by number"]


def test_directories_without_a_detection_saved_model_are_refused(db, admin, project, tmp_path):
    with pytest.raises(NotFound, match="no such model directory"):
        model_registry.register_directory(db, CLI_ACTOR, project["id"], tmp_path / "missing")
    with pytest.raises(ModelInvalid, match="holds no SavedModel"):
        model_registry.register_directory(db, CLI_ACTOR, project["id"], tmp_path)
    savedmodels.build_wrong_input(tmp_path / "classifier")
    with pytest.raises(ModelInvalid, match="takes images, not 'input_tensor'"):
        model_registry.register_directory(db, CLI_ACTOR, project["id"], tmp_path / "classifier")
    assert model_registry.list_models(db, project["id"]) == []


def test_the_same_directory_is_registered_once_per_project(db, admin, project, export_dir):
    first = model_registry.register_directory(db, CLI_ACTOR, project["id"], export_dir)
    with pytest.raises(Invalid, match=f"already registered in this project as model #{first['id']}"):
        model_registry.register_directory(db, CLI_ACTOR, project["id"], export_dir / "saved_model")


def test_only_roles_that_train_register_and_choose_models(db, users, project, export_dir, monkeypatch):
    with pytest.raises(PermissionError, match="labeler \\(labeler\\) may not train"):
        model_registry.register_directory(db, users["labeler"], project["id"], export_dir)
    with pytest.raises(PermissionError, match="may not register the model folder"):
        model_registry.register_directory(db, users["reviewer"], project["id"], export_dir)  # outside the data folder
    monkeypatch.setenv("BOXWISE_ALLOWED_PATHS", str(export_dir.parent))  # the owner allows it
    model = model_registry.register_directory(db, users["reviewer"], project["id"], export_dir)
    with pytest.raises(PermissionError):
        model_registry.set_current(db, users["viewer"], project["id"], model["id"])
    assert model_registry.set_current(db, users["reviewer"], project["id"], model["id"])["is_current"]


def test_one_model_per_project_is_current(db, admin, project, export_dir, tmp_path):
    other = savedmodels.build_detector(tmp_path / "second")
    first = model_registry.register_directory(db, CLI_ACTOR, project["id"], export_dir)
    second = model_registry.register_directory(db, CLI_ACTOR, project["id"], other)
    assert model_registry.current_model(db, project["id"]) is None
    model_registry.set_current(db, admin, project["id"], first["id"])
    model_registry.set_current(db, admin, project["id"], second["id"])
    listing = model_registry.list_models(db, project["id"])
    assert [(m["id"], m["is_current"]) for m in listing] == [(second["id"], True), (first["id"], False)]
    assert model_registry.current_model(db, project["id"])["id"] == second["id"]
    elsewhere = projects.create_project(db, admin, "birds", ["bird"])
    with pytest.raises(Invalid, match="belongs to another project"):
        model_registry.set_current(db, admin, elsewhere["id"], first["id"])


def test_a_run_export_is_registered_with_its_run_and_dataset_version(db, admin, project, export_dir, tmp_path):
    run_dir = tmp_path / "runs" / "1"
    shutil.copytree(export_dir, run_dir / "exported")
    (run_dir / "metrics.json").write_text(json.dumps({"mAP": 0.5}))
    export_id = db["exports"].insert({"project_id": project["id"], "format": "tfrecord"}).last_pk
    run_id = db["runs"].insert({"project_id": project["id"], "export_id": export_id,
                                "status": "succeeded", "model_dir": str(run_dir)}).last_pk
    model = model_registry.register_run(db, CLI_ACTOR, run_id)
    assert (model["run_id"], model["export_id"], model["source"]) == (run_id, export_id, "run")
    assert model["path"] == str((run_dir / "exported").resolve())
    assert model["name"] == f"run {run_id} · exported"
    assert model["metrics"] == {"mAP": 0.5}
    empty_run = db["runs"].insert({"project_id": project["id"], "status": "running",
                                   "model_dir": str(tmp_path / "runs" / "2")}).last_pk
    with pytest.raises(NotFound, match="has no exported model yet"):
        model_registry.register_run(db, CLI_ACTOR, empty_run)


@pytest.mark.parametrize("prefix", ["", "my_export/"])
def test_an_uploaded_zip_is_extracted_under_data_and_registered(db, admin, project, export_dir, data_dir, prefix):
    model = model_registry.register_zip(db, admin, project["id"], _zip(export_dir, prefix), "ssd_pets.zip")
    assert model["source"] == "upload" and model["origin"] == "ssd_pets.zip"
    assert model["name"] == "ssd_pets"
    assert model["path"].startswith(str(data_dir / "models"))
    assert model["label_map"] == savedmodels.LABEL_MAP


def test_unsafe_or_useless_zips_are_refused_and_leave_nothing(db, admin, project, export_dir, data_dir):
    def with_entry(name: str) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("saved_model/saved_model.pb", b"x")
            archive.writestr(name, b"evil")
        return out.getvalue()

    with pytest.raises(Invalid, match="reaches outside the folder"):
        model_registry.register_zip(db, admin, project["id"], with_entry("../../escape.txt"), "evil.zip")
    with pytest.raises(Invalid, match="absolute path"):
        model_registry.register_zip(db, admin, project["id"], with_entry("/etc/escape.txt"), "evil.zip")
    with pytest.raises(Invalid, match="not a valid zip file"):
        model_registry.register_zip(db, admin, project["id"], b"not a zip", "model.zip")
    only_labels = io.BytesIO()
    with zipfile.ZipFile(only_labels, "w") as archive:
        archive.writestr("label_map.pbtxt", savedmodels.LABEL_MAP)
    with pytest.raises(ModelInvalid, match="holds 0 SavedModels"):
        model_registry.register_zip(db, admin, project["id"], only_labels.getvalue(), "labels.zip")
    assert not (data_dir.parent / "escape.txt").exists()
    assert list((data_dir / "models").iterdir()) == []
    assert model_registry.list_models(db, project["id"]) == []


def test_an_export_job_of_a_run_brings_the_exported_checkpoints_evaluation(db, admin, project, export_dir, tmp_path):
    train_dir, job_dir = tmp_path / "runs" / "1", tmp_path / "runs" / "2"
    (train_dir / "evaluation").mkdir(parents=True)
    (train_dir / "evaluation" / "metrics.json").write_text(json.dumps({
        "ckpt-3": {"step": 300, "checkpoint": "ckpt-3", "metrics": {
            "DetectionBoxes_Precision/mAP": 0.31, "DetectionBoxes_Precision/mAP ByCategory/cat": 0.2}},
        "ckpt-5": {"step": 500, "checkpoint": "ckpt-5", "metrics": {"DetectionBoxes_Precision/mAP": 0.45}}}))
    shutil.copytree(export_dir, job_dir / "exported")
    train_id = db["runs"].insert({"project_id": project["id"], "kind": "train", "status": "succeeded",
                                  "model_dir": str(train_dir)}).last_pk
    db["runs"].insert({"project_id": project["id"], "kind": "export", "status": "succeeded",
                       "parent_run_id": train_id, "model_dir": str(job_dir),
                       "fine_tune_checkpoint": str(train_dir / "ckpt-3")})
    listed = model_registry.runs_with_exports(db, project["id"])
    assert [(r["run_id"], r["export_dir"], r["registered"]) for r in listed] == \
        [(train_id, job_dir / "exported", False)]
    model = model_registry.register_run(db, CLI_ACTOR, train_id)
    assert model["path"] == str((job_dir / "exported").resolve())
    assert model["metrics"] == {"DetectionBoxes_Precision/mAP": 0.31, "step": 300}
    assert model_registry.runs_with_exports(db, project["id"])[0]["registered"] is True


def test_a_label_map_that_disagrees_with_the_project_is_flagged(db, admin, export_dir, tmp_path):
    shapes = projects.create_project(db, admin, "shapes", ["circle", "dog"])
    model = model_registry.register_directory(db, CLI_ACTOR, shapes["id"], export_dir)
    assert model["warnings"] == ["'cat' is id 1 in the model's label map but 'circle' in this project"]
    other = projects.create_project(db, admin, "cats", ["cat"])
    assert model_registry.class_mismatches(db, other["id"], savedmodels.LABEL_MAP) == \
        ["'dog' is id 2 in the model's label map but not a class of this project"]
