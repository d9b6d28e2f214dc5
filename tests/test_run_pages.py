"""The Configs and Runs pages through Streamlit's AppTest, on a real SQLite file and real
processes (the stand-in trainer of tests/helpers.py, as a configured external runner)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from backend import config_document as pc, run_artefacts, run_lifecycle, run_views, saved_configs
from tests.helpers import button as _button, signed_in
from tests.helpers import make_dataset_version, poll


@pytest.fixture
def stocked(setup, stand_in):
    return {"runner": stand_in, "export_id": setup["export_id"], "config_id": setup["config_id"]}


def test_reviewer_gets_no_runner_choice_and_no_command_fields(db, users, project, stocked):
    at = signed_in(db, "reviewer", "pages/runs.py")
    assert "Launch a training run" in [e.label for e in at.expander]
    assert not at.text_input  # no interpreter or script field, for anyone
    assert [s.key for s in at.selectbox if s.key == "launch_runner"] == []


def test_admin_launches_a_configured_runner_watches_it_and_cancels_it(db, users, project, stocked):
    at = signed_in(db, "admin", "pages/runs.py")
    assert "No training runs yet." in [i.value for i in at.info]
    assert not at.text_input
    runner = at.selectbox(key="launch_runner")
    assert runner.options == ["Boxwise (built in)", "external runner: stand-in"]
    runner.set_value("stand-in")
    at.number_input(key="launch_steps").set_value(1000)
    at.button[0].click().run()  # the form's Launch
    assert not at.exception, at.exception
    [run] = run_lifecycle.list_runs(db, project["id"])
    assert run["status"] == "running" and run["created_by"] == users["admin"]["id"]
    assert run["runner"] == "stand-in" and json.loads(run["command"])[0] == sys.executable
    poll(lambda: (run_artefacts.run_progress(run) or {}).get("step", 0) >= 20)

    at.run()
    assert at.subheader[0].value == f"Run #{run['id']}: running"
    assert at.progress[0].value >= 2  # percent
    assert [m.label for m in at.metric][:2] == ["ETA", "steps/s"]
    assert at.metric[5].value == "CPU"
    button(at, "Cancel").click().run()
    assert not at.exception, at.exception
    assert run_lifecycle.wait_for_run(db, run["id"])["status"] == "cancelled"
    at.run()
    assert at.subheader[0].value == f"Run #{run['id']}: cancelled"
    button(at, "Resume").click().run()
    assert not at.exception, at.exception
    resumed = run_lifecycle.get_run(db, run["id"])
    assert resumed["status"] == "running" and resumed["attempts"] == 2
    run_lifecycle.cancel_run(db, users["admin"], run["id"])
    assert run_lifecycle.wait_for_run(db, run["id"])["status"] == "cancelled"


def test_viewer_sees_runs_but_cannot_launch_or_control(db, users, project, stocked):
    run = run_lifecycle.start_run(db, users["admin"], project["id"], export_id=stocked["export_id"],
                         config_id=stocked["config_id"], runner=stocked["runner"],
                         num_train_steps=5)
    run_lifecycle.wait_for_run(db, run["id"])
    at = signed_in(db, "viewer", "pages/runs.py")
    assert not at.expander or "Launch a training run" not in [e.label for e in at.expander]
    assert at.subheader[0].value == f"Run #{run['id']}: succeeded"
    assert not [b for b in at.button if b.label in ("Cancel", "Resume")]


def test_evaluations_and_comparison_are_shown(db, users, project, stocked):
    runs = []
    for steps in (5, 7):
        run = run_lifecycle.start_run(db, users["admin"], project["id"], export_id=stocked["export_id"],
                             config_id=stocked["config_id"], runner=stocked["runner"],
                             num_train_steps=steps)
        runs.append(run_lifecycle.wait_for_run(db, run["id"]))
    evaluation = Path(runs[1]["model_dir"]) / run_artefacts.EVALUATION_DIR
    evaluation.mkdir()
    (evaluation / "metrics.json").write_text(json.dumps({
        "ckpt-7": {"checkpoint": "ckpt-7", "step": 7, "num_images": 4, "metrics": {
            run_artefacts.MAP: 0.5, f"{run_artefacts.MAP}@.50IOU": 0.75, f"{run_artefacts.MAP} ByCategory/cat": 0.25},
            "pr_curves": {"cat": [1.0] * 51 + [0.5] * 50}}}))
    at = signed_in(db, "reviewer", "pages/runs.py")
    assert not at.exception, at.exception
    step, curve = run_views.pr_curve_rows(runs[1])
    assert step == 7 and len(curve) == 101
    assert curve[50] == {"class": "cat", "recall": 0.5, "precision": 1.0}
    assert curve[51] == {"class": "cat", "recall": 0.51, "precision": 0.5}
    assert "Precision–recall at IoU 0.5 per class (checkpoint at step 7)" in [c.value for c in at.caption]
    compared = at.dataframe[-1].value
    assert list(compared["run"]) == [runs[1]["id"], runs[0]["id"]]
    assert list(compared["best mAP"])[0] == 0.5
    assert list(compared["steps"]) == [7, 5]
    assert at.code[-1].value == "(identical)"  # same config, same dataset version
    evaluated = at.dataframe[1].value
    assert evaluated.loc[7, run_artefacts.MAP] == 0.5
    assert at.radio(key=f"export_which_{runs[1]['id']}").options == ["best mAP", "latest"]
    at.text_input(key=f"export_name_{runs[1]['id']}").input("shapes v1")
    button(at, "Export").click().run()
    assert not at.exception, at.exception
    export = run_lifecycle.list_runs(db, project["id"], kind="export")[0]
    assert export["parent_run_id"] == runs[1]["id"]
    assert export["fine_tune_checkpoint"] == str(Path(runs[1]["model_dir"]) / "ckpt-7")
    run_lifecycle.cancel_run(db, users["reviewer"], export["id"])  # no real exporter for the stand-in's files


def test_config_page_fills_validates_and_saves_a_new_version(db, users, project, stocked):
    at = signed_in(db, "reviewer", "pages/config.py")
    assert at.selectbox(key="config_source").value == "saved"
    button(at, "Fill from dataset version").click().run()
    assert not at.exception, at.exception
    text = at.text_area(key="config_text").value
    assert "num_classes: 3" in text and "train.record-?????-of-00002" in text
    button(at, "Validate").click().run()
    assert any("no problems" in s.value for s in at.success)
    at.text_area(key="config_text").input(text.replace("batch_size: 2", "batch_size: 4")).run()
    assert "+  batch_size: 4" in at.code[0].value
    at.text_input(key="config_name").input("stand-in")
    button(at, "Save as a new version").click().run()
    assert not at.exception, at.exception
    assert [c["version"] for c in saved_configs.config_versions(db, project["id"], "stand-in")] == [2, 1]
    saved = saved_configs.list_configs(db, project["id"])[0]
    assert pc.ConfigDocument(saved["text"]).get("train_config.batch_size") == 4


def test_config_page_reports_syntax_errors_with_line_and_column(db, users, project, stocked):
    at = signed_in(db, "reviewer", "pages/config.py")
    at.text_area(key="config_text").input("model {\n  ssd {\n").run()
    assert not at.exception, at.exception
    assert any("line 3, column" in e.value for e in at.error)


def test_config_page_works_on_every_visit_and_keeps_the_edits(db, users, project, stocked):
    """Streamlit drops a widget's state on pages it is not drawn on; the second visit used to
    raise KeyError 'config_text'."""
    at = signed_in(db, "reviewer", "pages/config.py")
    edited = at.text_area(key="config_text").value + "\n# tried batch 8\n"
    at.text_area(key="config_text").input(edited).run()
    for _ in range(2):
        at.switch_page("pages/home.py").run()
        at.switch_page("pages/config.py").run()
        assert not at.exception, at.exception
        assert at.text_area(key="config_text").value == edited


def test_admin_retrains_from_a_run_on_the_newest_dataset_version(db, users, project, stocked, data_dir):
    run = run_lifecycle.start_run(db, users["admin"], project["id"], export_id=stocked["export_id"],
                         config_id=stocked["config_id"], runner=stocked["runner"],
                         num_train_steps=10)
    run_lifecycle.wait_for_run(db, run["id"])
    newest = make_dataset_version(db, project, data_dir)
    at = signed_in(db, "admin", "pages/runs.py")
    assert at.selectbox(key=f"retrain_version_{run['id']}").value.id == newest
    button(at, "Retrain").click().run()
    assert not at.exception, at.exception
    retrain = run_lifecycle.list_runs(db, project["id"])[0]
    assert retrain["parent_run_id"] == run["id"] and retrain["export_id"] == newest
    assert retrain["fine_tune_checkpoint"] == run_artefacts.latest_checkpoint(run["model_dir"])
    assert at.selectbox(key="run_id").value == retrain["id"]
    run_lifecycle.cancel_run(db, users["admin"], retrain["id"])
    assert run_lifecycle.wait_for_run(db, retrain["id"])["status"] == "cancelled"


def button(at, label: str):
    return _button(at, label, prefix=True)


def test_a_viewer_sees_run_errors_and_logs_with_paths_relative_to_the_data_folder(db, users, project, stocked,
                                                                                data_dir):
    run = run_lifecycle.start_run(db, users["admin"], project["id"], export_id=stocked["export_id"],
                                  config_id=stocked["config_id"], runner=stocked["runner"])
    run_lifecycle.cancel_run(db, users["admin"], run["id"])
    run = run_lifecycle.wait_for_run(db, run["id"])
    model_dir = Path(run["model_dir"])
    db["runs"].update(run["id"], {"status": "failed", "error": f"no checkpoint in {model_dir}"})
    with open(run["log_path"], "a", encoding="utf-8") as log:
        log.write(f"\nreading {model_dir}/pipeline.config\n")
    relative = model_dir.relative_to(data_dir).as_posix()
    for role, shown in (("viewer", relative), ("admin", str(model_dir))):
        at = signed_in(db, role, "pages/runs.py")
        assert not at.exception, at.exception
        assert list(at.dataframe[0].value["error"]) == [f"no checkpoint in {shown}"]
        log_text = "\n".join(c.value for c in at.code)
        assert f"reading {shown}/pipeline.config" in log_text
        if role == "viewer":
            assert str(data_dir) not in log_text
