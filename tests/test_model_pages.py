"""The Models and Predict pages through Streamlit's AppTest, with a real SavedModel
(tests/savedmodels.py), a real SQLite file and the real batch-prediction process."""
from __future__ import annotations

import time


from backend import annotations, images, model_registry, predictions
from backend.auth import CLI_ACTOR
from tests.helpers import image_bytes, signed_in
from tests.helpers import button as _button


def test_reviewer_registers_a_folder_marks_it_current_and_starts_drafts(db, users, project, export_dir,
                                                                       monkeypatch):
    monkeypatch.setenv("BOXWISE_ALLOWED_PATHS", str(export_dir.parent))  # outside the data folder
    images.ingest(db, users["admin"], project["id"], [("a.png", image_bytes((200, 100), fmt="PNG"))])
    at = signed_in(db, "reviewer", "pages/models.py")
    at.text_input(key="folder_model_path").input(str(export_dir))
    button(at, "Register").click()  # the first Register is the folder form's (no runs yet)
    at.run()
    assert not at.exception and not at.error, (at.exception, at.error)
    [model] = model_registry.list_models(db, project["id"])
    assert model["name"] == export_dir.name
    button(at, "Mark as current").click().run()
    assert model_registry.current_model(db, project["id"])["id"] == model["id"]
    at.slider(key="batch_min_score").set_value(0.5)
    button(at, "Predict unlabeled images").click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    deadline = time.monotonic() + 300
    while predictions.read_progress(project["id"])["state"] in predictions.ACTIVE_STATES \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert predictions.read_progress(project["id"])["state"] == "done"
    image_id = images.list_images(db, project["id"])[0]["id"]
    assert [b["score"] for b in annotations.get_boxes(db, image_id, source="model")] == [0.9, 0.6]
    at.run()
    assert at.progress[0].value == 100  # percent
    assert at.success[0].value == "2 draft boxes on 1 images"


def test_labeler_sees_the_registry_but_cannot_change_it(db, users, project, export_dir):
    model_registry.register_directory(db, CLI_ACTOR, project["id"], export_dir)
    at = signed_in(db, "labeler", "pages/models.py")
    assert len(at.dataframe[0].value) == 1
    assert not [b for b in at.button if b.label in ("Register", "Mark as current")]


def test_predict_page_filters_cached_detections_without_running_the_model_again(db, users, project, export_dir):
    report = images.ingest(db, users["admin"], project["id"], [("a.png", image_bytes((200, 100), fmt="PNG"))])
    model_registry.register_directory(db, CLI_ACTOR, project["id"], export_dir)
    at = signed_in(db, "viewer", "pages/predict.py")
    at.multiselect(key="predict_pick").set_value([report.items[0].image_id])
    [b for b in at.button if b.label == "Predict"][1].click().run()  # the project-images form's
    assert not at.exception and not at.error, (at.exception, at.error)
    heading = at.markdown[0].value
    assert heading.startswith("**a.png** · 200×100 · 2 detections scoring ≥ 0.50 · ")
    assert at.dataframe[0].value["class"].tolist() == ["dog", "cat"]
    at.slider(key="predict_min_score").set_value(0.8).run()
    assert at.dataframe[0].value["class"].tolist() == ["dog"]
    # Same latency figures: the detections came from the session, not from a second model call.
    assert at.markdown[0].value == heading.replace("2 detections scoring ≥ 0.50", "1 detection scoring ≥ 0.80")
    at.slider(key="predict_min_score").set_value(0.2).run()
    at.multiselect(key="predict_classes_1_2").set_value([1]).run()
    assert at.dataframe[0].value["score"].tolist() == [0.6, 0.3]
    assert [b.label for b in at.get("download_button")] == \
        ["Download JSON (COCO results)", "Download CSV", "Annotated PNG"]


def test_predict_page_never_shows_one_models_detections_under_another(db, users, project, export_dir,
                                                                     tmp_path):
    import shutil
    report = images.ingest(db, users["admin"], project["id"], [("a.png", image_bytes((200, 100), fmt="PNG"))])
    first = model_registry.register_directory(db, CLI_ACTOR, project["id"], export_dir)
    second = model_registry.register_directory(db, CLI_ACTOR, project["id"],
                                       shutil.copytree(export_dir, tmp_path / "second"))
    at = signed_in(db, "viewer", "pages/predict.py")
    at.selectbox[0].select(next(m for m in at.selectbox[0].options if m.startswith(f"#{first['id']} ")))
    at.run()
    at.multiselect(key="predict_pick").set_value([report.items[0].image_id])
    [b for b in at.button if b.label == "Predict"][1].click().run()
    assert at.markdown[0].value.startswith("**a.png** · 200×100 · 2 detections scoring ≥ 0.50 · ")
    at.selectbox[0].select(next(m for m in at.selectbox[0].options if m.startswith(f"#{second['id']} ")))
    at.run()
    assert not at.exception, at.exception
    assert not at.dataframe and not [m for m in at.markdown if m.value.startswith("**a.png**")]
    assert at.info[0].value == (f"The last detections came from model #{first['id']}; press Predict "
                                f"to try #{second['id']} second.")


def test_predict_page_takes_uploads_and_reports_bad_files(db, users, project, export_dir):
    model_registry.register_directory(db, CLI_ACTOR, project["id"], export_dir)
    at = signed_in(db, "viewer", "pages/predict.py")
    at.file_uploader[0].set_value([("photo.jpg", image_bytes((160, 120)), "image/jpeg"),
                                   ("broken.jpg", b"not a picture", "image/jpeg")])
    [b for b in at.button if b.label == "Predict"][0].click().run()  # the upload form's
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [
        "broken.jpg: not an image (the content is not a format Pillow can read)"]
    assert at.markdown[0].value.startswith("**photo.jpg** · 160×120 · 2 detections scoring ≥ 0.50 · ")
    assert at.dataframe[0].value["class"].tolist() == ["dog", "cat"]


def button(at, label: str):
    return _button(at, label, prefix=True)
