"""Batch prediction into draft boxes, the background process and its progress file, and the
`predict` / `predict-project` / `models` commands, with real SavedModels and a real SQLite file."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from backend import annotations, images, model_registry, predictions
from backend.__main__ import main
from backend.errors import Invalid
from backend.auth import CLI_ACTOR
from tests import savedmodels
from tests.helpers import image_bytes


@pytest.fixture
def stocked(db, admin, project, export_dir):
    """The pets project (cat=1, dog=2, bird=3) with three 200×100 images and a current model."""
    report = images.ingest(db, admin, project["id"], [
        (f"img{i}.png", image_bytes((200, 100), color=(i * 40, 0, 0), fmt="PNG")) for i in range(3)])
    model = model_registry.register_directory(db, CLI_ACTOR, project["id"], export_dir)
    model_registry.set_current(db, admin, project["id"], model["id"])
    return {"image_ids": [item.image_id for item in report.items], "model": model}


def _boxes(db, image_id):
    return [(b["label_id"], b["xmin"], b["ymin"], b["xmax"], b["ymax"], b["source"], b["score"])
            for b in annotations.get_boxes(db, image_id)]


def _label_id(db, project, name):
    return next(r["id"] for r in db.query("select id from labels where project_id = ? and name = ?",
                                          [project["id"], name]))


def test_unlabeled_images_get_scored_drafts_events_and_uncertainty(db, admin, project, stocked, data_dir):
    progress = predictions.predict_project(db, admin, project["id"], min_score=0.5)
    assert {k: progress[k] for k in ("state", "total", "done", "drafts", "skipped", "failed")} == \
        {"state": "done", "total": 3, "done": 3, "drafts": 6, "skipped": 0, "failed": 0}
    assert progress["warnings"] == []  # the model's label map names the project's classes
    dog, cat = _label_id(db, project, "dog"), _label_id(db, project, "cat")
    for image_id in stocked["image_ids"]:
        assert sorted(_boxes(db, image_id)) == sorted([
            (dog, pytest.approx(60.0), pytest.approx(30.0), pytest.approx(180.0), pytest.approx(90.0), "model", 0.9),
            (cat, 0.0, 0.0, 200.0, 100.0, "model", 0.6)])
        image = images.get_image(db, image_id)
        assert (image["version"], image["status"], image["uncertainty"]) == (1, "new", pytest.approx(0.8))
        events = annotations.history(db, image_id)
        assert [(e["kind"], e["user_id"], e["before"], len(e["after"])) for e in events] == \
            [("predictions", admin["id"], [], 2)]
    written = json.loads(predictions.progress_path(project["id"]).read_text())
    assert (written["state"], written["done"], written["model_id"]) == ("done", 3, stocked["model"]["id"])


def test_human_boxes_and_leased_images_are_left_alone(db, admin, users, project, stocked):
    first, second, third = stocked["image_ids"]
    bird = _label_id(db, project, "bird")
    annotations.save_boxes(db, users["labeler"], first, [
        {"label_id": bird, "xmin": 1, "ymin": 2, "xmax": 30, "ymax": 40}], base_version=0)
    db["images"].update(second, {"lease_user_id": users["labeler"]["id"], "lease_expires_at": time.time() + 600})
    progress = predictions.predict_project(db, admin, project["id"], min_score=0.5)
    assert (progress["total"], progress["skipped"], progress["drafts"]) == (2, 1, 2)
    assert _boxes(db, first) == [(bird, 1.0, 2.0, 30.0, 40.0, "human", None)]
    assert images.get_image(db, first)["version"] == 1 and images.get_image(db, first)["uncertainty"] is None
    assert _boxes(db, second) == [] and images.get_image(db, second)["version"] == 0
    assert len(_boxes(db, third)) == 2


def test_a_second_run_replaces_drafts_and_respects_the_min_score(db, admin, project, stocked):
    predictions.predict_project(db, admin, project["id"], min_score=0.5)
    predictions.predict_project(db, admin, project["id"], min_score=0.2)
    image_id = stocked["image_ids"][0]
    assert sorted(b[-1] for b in _boxes(db, image_id)) == [0.3, 0.6, 0.9]
    assert images.get_image(db, image_id)["version"] == 2
    history = annotations.history(db, image_id)
    assert [(len(e["before"]), len(e["after"])) for e in history] == [(2, 3), (0, 2)]


def test_drafts_accepted_and_rejected_on_the_label_page_become_human_boxes(db, admin, users, project, stocked):
    predictions.predict_project(db, admin, project["id"], min_score=0.5)
    image_id = stocked["image_ids"][0]
    drafts = {d["score"]: d["id"] for d in annotations.drafts(db, image_id)}
    image = annotations.accept_drafts(db, users["labeler"], image_id, [drafts[0.9]],
                                      images.get_image(db, image_id)["version"])
    annotations.reject_drafts(db, users["labeler"], image_id, [drafts[0.6]], image["version"])
    dog = _label_id(db, project, "dog")
    assert _boxes(db, image_id) == [(dog, pytest.approx(60.0), pytest.approx(30.0), pytest.approx(180.0),
                                     pytest.approx(90.0), "human", None)]
    history = annotations.history_table(db, image_id)
    assert [(row["who"], row["change"]) for row in history][-1] == ("admin", "predictions")
    assert len(history) >= 3 and {row["who"] for row in history[:-1]} == {"labeler"}
    # The labeled image is no longer unlabeled: the next batch leaves it alone.
    assert image_id not in [i["id"] for i in predictions.unlabeled_images(db, project["id"])]


def test_batch_prediction_needs_a_model_and_the_train_right(db, admin, users, project):
    with pytest.raises(Invalid, match="has no current model"):
        predictions.predict_project(db, admin, project["id"])
    with pytest.raises(PermissionError):
        predictions.start(db, users["labeler"], project["id"])


def test_the_background_process_runs_to_completion_and_says_so(db, admin, project, stocked):
    started = predictions.start(db, admin, project["id"], min_score=0.5)
    assert started["state"] in ("starting", "running") and started["pid"] > 0
    deadline = time.monotonic() + 300
    progress = predictions.read_progress(project["id"])
    while progress["state"] in predictions.ACTIVE_STATES and time.monotonic() < deadline:
        time.sleep(0.5)
        progress = predictions.read_progress(project["id"])
    assert (progress["state"], progress["done"], progress["total"], progress["drafts"], progress["fraction"]) == \
        ("done", 3, 3, 6, 1.0), predictions.log_path(project["id"]).read_text()
    assert all(len(_boxes(db, i)) == 2 for i in stocked["image_ids"])
    assert [e["user_id"] for e in annotations.history(db, stocked["image_ids"][0])] == [admin["id"]]


def test_a_dead_process_is_reported_as_failed(db, admin, project, data_dir):
    from backend import atomic
    atomic.write_json(predictions.progress_path(project["id"]),
                      {"state": "running", "pid": 2**22 + 12345, "done": 1, "total": 4})
    predictions.log_path(project["id"]).write_text("Traceback...\nMemoryError: out of memory\n")
    progress = predictions.read_progress(project["id"])
    assert progress["state"] == "failed"
    assert progress["message"].endswith("MemoryError: out of memory")
    assert progress["fraction"] == 0.25


# ---------------------------------------------------------------- the command line


def test_cli_predict_json_lines_with_an_error_line_and_exit_1(export_dir, tmp_path, capsys):
    good = tmp_path / "good.jpg"
    good.write_bytes(image_bytes((200, 100)))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    other = tmp_path / "other.png"
    other.write_bytes(image_bytes((100, 50), fmt="PNG"))
    code = main(["predict", "--model", str(export_dir), str(good), str(bad), str(other), "--json",
                 "--min-score", "0.5"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert lines[0] == {"image": str(good), "width": 200, "height": 100, "detections": [
        {"class_id": 2, "class_name": "dog", "score": 0.9, "box": [60.0, 30.0, 180.0, 90.0],
         "box_normalized": [0.3, 0.3, 0.9, 0.9]},
        {"class_id": 1, "class_name": "cat", "score": 0.6, "box": [0.0, 0.0, 200.0, 100.0],
         "box_normalized": [0.0, 0.0, 1.0, 1.0]}]}
    assert lines[1] == {"image": str(bad), "error": "not an image (the content is not a format Pillow can read)"}
    assert lines[2]["image"] == str(other) and [d["box"] for d in lines[2]["detections"]] == \
        [[30.0, 15.0, 90.0, 45.0], [0.0, 0.0, 100.0, 50.0]]


def test_cli_predict_table_and_class_filter(export_dir, tmp_path, capsys):
    good = tmp_path / "good.jpg"
    good.write_bytes(image_bytes((200, 100)))
    assert main(["predict", "--model", str(export_dir), str(good), "--min-score", "0.2",
                 "--classes", "cat"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{good}  200×100  2 detections ≥ 0.2  ")
    assert out[1].split() == ["class", "score", "xmin", "ymin", "xmax", "ymax"]
    assert out[2].split() == ["cat", "0.600", "0.0", "0.0", "200.0", "100.0"]
    assert out[3].split() == ["cat", "0.300", "40.0", "10.0", "120.0", "50.0"]


def test_cli_models_register_list_set_current_and_predict_project(db, admin, project, export_dir, capsys):
    images.ingest(db, admin, project["id"], [("a.png", image_bytes((200, 100), fmt="PNG"))])
    assert main(["models", "register", "--project", "pets", "--dir", str(export_dir), "--name", "ssd"]) == 0
    model_id = model_registry.list_models(db, project["id"])[0]["id"]
    assert main(["models", "set-current", "--project", "pets", str(model_id)]) == 0
    assert main(["models", "list", "--project", "pets", "--json"]) == 0
    assert main(["predict-project", "pets", "--min-score", "0.5"]) == 0
    out = capsys.readouterr().out.splitlines()
    listed = json.loads(out[2])
    assert (listed["id"], listed["name"], listed["is_current"]) == (model_id, "ssd", True)
    assert out[-1] == "done: 1/1 images, 2 drafts, 0 skipped, 0 failed"


def test_the_most_uncertain_first_queue_follows_the_models_uncertainty(db, admin, users, project, tmp_path):
    from backend import labeling
    # Grey levels 250, 128, 30 → scores 0.98, 0.50, 0.12 → uncertainties 0.04, 1.0, 0.24.
    report = images.ingest(db, admin, project["id"], [
        (f"grey{level}.png", image_bytes((40, 30), color=(level,) * 3, fmt="PNG")) for level in (250, 128, 30)])
    bright, middle, dark = (item.image_id for item in report.items)
    model = model_registry.register_directory(db, CLI_ACTOR, project["id"], savedmodels.build_brightness_detector(tmp_path / "b"))
    predictions.predict_project(db, admin, project["id"], model_id=model["id"], min_score=0.0)
    assert [round(images.get_image(db, i)["uncertainty"], 2) for i in (bright, middle, dark)] == [0.04, 1.0, 0.24]
    served = []
    for _ in range(3):
        image = labeling.next_image(db, users["labeler"], project["id"], order="uncertain", exclude=served)
        served.append(image["id"])
    assert served == [middle, dark, bright]


def test_a_stop_request_ends_the_batch_as_cancelled(db, admin, project, stocked):
    progress = predictions.predict_project(db, admin, project["id"], should_stop=lambda: True)
    assert (progress["state"], progress["done"], progress["total"]) == ("cancelled", 0, 3)
    assert predictions.read_progress(project["id"])["state"] == "cancelled"


def test_batch_prediction_runs_niced_with_thread_limits_like_training(db, admin, project, stocked,
                                                                    monkeypatch):
    monkeypatch.setenv("BOXWISE_TRAIN_THREADS", "1")
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    started = predictions.start(db, admin, project["id"], min_score=0.5)
    pid = started["pid"]
    stat = Path(f"/proc/{pid}/stat").read_text()
    niceness = int(stat[stat.rindex(")") + 2:].split()[16])  # field 19 of /proc/<pid>/stat
    environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    predictions.cancel(admin, project["id"])
    assert niceness == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
    assert b"TF_NUM_INTRAOP_THREADS=1" in environment and b"TF_NUM_INTEROP_THREADS=1" in environment
    deadline = time.monotonic() + 120
    while predictions.read_progress(project["id"])["state"] in predictions.ACTIVE_STATES:
        assert time.monotonic() < deadline
        time.sleep(0.2)
