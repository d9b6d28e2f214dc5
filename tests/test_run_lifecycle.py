"""Runs as background processes: start, progress, cancel, resume, re-attach, queue.

Most tests drive a small stand-in trainer through the external-runner path (a runner the
server settings name, as for a TF OD API installation): it follows the progress-file
contract and the SIGTERM → checkpoint → exit behaviour, in milliseconds per step. The tests
at the end run the real `python -m backend train` on a tiny generated dataset.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend import db as database, run_artefacts, run_lifecycle, run_processes, run_views, saved_configs, server_settings
from backend.auth import CLI_ACTOR
from backend.errors import Invalid, NotFound
from backend.training import progress
from tests.helpers import CONFIG, STAND_IN, STAND_IN_RUNNER, TIMEOUT, make_dataset_version, poll  # noqa: F401

def start(db, setup, stand_in, **kwargs):
    return run_lifecycle.start_run(db, setup["actor"], setup["project_id"], export_id=setup["export_id"],
                          config_id=setup["config_id"], runner=stand_in, **kwargs)


def step_of(run) -> int:
    return (run_artefacts.run_progress(run) or {}).get("step", 0)


def test_run_records_process_and_progress_advances_then_cancel_leaves_a_checkpoint(db, setup, stand_in):
    run = start(db, setup, stand_in)
    assert run["status"] == "running"
    assert run["pid"] > 0 and run["pid_start_time"] == run_processes.process_start_time(run["pid"])
    assert Path(run["model_dir"]) == Path(os.environ["BOXWISE_DATA"]).resolve() / "runs" / str(run["id"])
    assert os.getpgid(run["pid"]) == run["pid"]  # its own process group
    first = poll(lambda: step_of(run))
    poll(lambda: step_of(run) > first + 5)
    text = Path(run["model_dir"], "pipeline.config").read_text()
    assert "num_classes: 3" in text and "train.record-?????-of-00002" in text
    assert "# a config the stand-in is launched with" in text

    run_lifecycle.cancel_run(db, setup["actor"], run["id"])
    run = run_lifecycle.wait_for_run(db, run["id"], timeout=TIMEOUT)
    assert run["status"] == "cancelled" and run["error"] is None
    stopped = progress.read_status(run["model_dir"])["step"]
    assert run_artefacts.latest_checkpoint(run["model_dir"]) == str(Path(run["model_dir"]) / f"ckpt-{stopped}")
    assert "cancelled at step" in run_artefacts.log_tail(run)[-1]


def test_trainer_runs_niced_with_thread_limits_and_is_reaped_when_it_ends(db, setup, stand_in,
                                                                         monkeypatch):
    monkeypatch.setenv("BOXWISE_TRAIN_THREADS", "1")
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    # 50 steps (about 1 s): long enough that the process is still alive when /proc is read on a
    # loaded machine (3 steps once ended first, leaving an empty environ).
    run = start(db, setup, stand_in, num_train_steps=50)
    stat = Path(f"/proc/{run['pid']}/stat").read_text()
    niceness = int(stat[stat.rindex(")") + 2:].split()[16])  # field 19 of /proc/<pid>/stat
    assert niceness == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
    environment = Path(f"/proc/{run['pid']}/environ").read_bytes().split(b"\0")
    assert b"TF_NUM_INTRAOP_THREADS=1" in environment and b"TF_NUM_INTEROP_THREADS=1" in environment
    # Ended, and nobody looked at the run: the watcher's reaper leaves no zombie behind.
    poll(lambda: Path(f"/proc/{run['pid']}/stat").read_text().split(") ")[1][0] == "Z"
         or run_processes.reap_children())
    run_processes.reap_children()
    assert not Path(f"/proc/{run['pid']}").exists()
    assert run_lifecycle.wait_for_run(db, run["id"])["status"] == "succeeded"  # the exit code was kept


def test_resume_continues_from_the_latest_checkpoint_in_the_same_folder(db, setup, stand_in):
    run = start(db, setup, stand_in)
    poll(lambda: step_of(run) >= 3)
    run_lifecycle.cancel_run(db, setup["actor"], run["id"])
    run = run_lifecycle.wait_for_run(db, run["id"])
    stopped = progress.read_status(run["model_dir"])["step"]

    resumed = run_lifecycle.resume_run(db, setup["actor"], run["id"], num_train_steps=stopped + 5)
    assert resumed["status"] == "running" and resumed["attempts"] == 2
    assert progress.read_status(run["model_dir"]) is None  # the old status cannot settle it
    done = run_lifecycle.wait_for_run(db, run["id"])
    assert done["status"] == "succeeded"
    assert progress.read_status(run["model_dir"])["step"] == stopped + 5
    assert f"starting at step {stopped}" in "\n".join(run_artefacts.log_tail(done))


def test_killed_trainer_is_settled_as_failed_with_the_reason_after_reattach(db, setup, stand_in, data_dir):
    run = start(db, setup, stand_in)
    poll(lambda: step_of(run) >= 2)
    os.kill(run["pid"], signal.SIGKILL)
    poll(lambda: not run_processes.process_alive(run["pid"], run["pid_start_time"]))

    restarted = database.connect(data_dir / "boxwise.db")  # the dashboard after a restart
    assert run_lifecycle.settle_runs(restarted) == [run["id"]]
    run = run_lifecycle.get_run(restarted, run["id"])
    assert run["status"] == "failed"
    assert "ended without writing its status" in run["error"] and "SIGKILL" in run["error"]
    restarted.conn.close()


def test_reattach_keeps_live_processes_running_and_settles_those_gone_while_away(db, setup, stand_in, data_dir):
    run = start(db, setup, stand_in)
    poll(lambda: step_of(run) >= 1)
    away = run_processes._children.pop(run["pid"])  # a new dashboard process has no handle on it

    restarted = database.connect(data_dir / "boxwise.db")
    assert run_lifecycle.settle_runs(restarted) == []
    assert run_lifecycle.get_run(restarted, run["id"])["status"] == "running"

    os.killpg(run["pid"], signal.SIGKILL)
    away.wait()
    assert run_lifecycle.settle_runs(restarted) == [run["id"]]
    settled = run_lifecycle.get_run(restarted, run["id"])
    assert settled["status"] == "failed" and "exit code is unknown" in settled["error"]
    restarted.conn.close()


def test_a_recycled_pid_is_not_mistaken_for_the_run(db, setup, stand_in):
    run = start(db, setup, stand_in)
    run_lifecycle.cancel_run(db, setup["actor"], run["id"])
    run_lifecycle.wait_for_run(db, run["id"])
    Path(run["model_dir"], "status.json").unlink(missing_ok=True)
    # Pretend the row points at a live process that started at another time (this test's own pid).
    db["runs"].update(run["id"], {"status": "running", "pid": os.getpid(), "pid_start_time": 1.0,
                                  "cancel_requested_at": None})
    assert run_lifecycle.settle_runs(db) == [run["id"]]
    assert run_lifecycle.get_run(db, run["id"])["status"] == "failed"


def test_queued_runs_start_in_order_when_a_slot_frees(db, setup, stand_in, monkeypatch):
    monkeypatch.setenv("BOXWISE_MAX_RUNS", "1")
    first = start(db, setup, stand_in)
    second = start(db, setup, stand_in)
    third = start(db, setup, stand_in)
    assert [first["status"], second["status"], third["status"]] == ["running", "queued", "queued"]
    assert run_lifecycle.pump_queue(db) == []

    run_lifecycle.cancel_run(db, setup["actor"], third["id"])
    assert run_lifecycle.get_run(db, third["id"])["status"] == "cancelled"
    run_lifecycle.cancel_run(db, setup["actor"], first["id"])
    run_lifecycle.wait_for_run(db, first["id"])
    assert run_lifecycle.get_run(db, second["id"])["status"] == "running"
    assert run_lifecycle.get_run(db, third["id"])["status"] == "cancelled"
    run_lifecycle.cancel_run(db, setup["actor"], second["id"])
    assert run_lifecycle.wait_for_run(db, second["id"])["status"] == "cancelled"


def test_cancel_escalates_to_sigkill_after_the_grace_period(db, setup, stand_in, monkeypatch):
    monkeypatch.setenv("STAND_IN_IGNORE_TERM", "1")
    monkeypatch.setenv("BOXWISE_CANCEL_GRACE", "0.5")
    run = start(db, setup, stand_in)
    poll(lambda: step_of(run) >= 1)
    run_lifecycle.cancel_run(db, setup["actor"], run["id"])
    run = run_lifecycle.wait_for_run(db, run["id"])
    assert run["status"] == "cancelled" and "killed before it wrote its status" in run["error"]
    assert run["returncode"] == -signal.SIGKILL


def test_only_admins_and_reviewers_launch_runs(db, setup, stand_in, users):
    for role in ("labeler", "viewer"):
        with pytest.raises(PermissionError):
            run_lifecycle.start_run(db, users[role], setup["project_id"], export_id=setup["export_id"],
                           config_id=setup["config_id"])
    assert run_lifecycle.list_runs(db, setup["project_id"]) == []


def test_only_admins_start_an_external_runner_and_only_by_a_configured_name(db, setup, stand_in, users):
    with pytest.raises(PermissionError, match="may not external runner"):
        run_lifecycle.start_run(db, users["reviewer"], setup["project_id"], export_id=setup["export_id"],
                       config_id=setup["config_id"], runner=stand_in)
    with pytest.raises(NotFound, match="no external runner 'mine' \\(stand-in\\)"):
        run_lifecycle.start_run(db, users["admin"], setup["project_id"], export_id=setup["export_id"],
                       config_id=setup["config_id"], runner="mine")
    with pytest.raises(TypeError):  # no interpreter or script is taken from a caller
        run_lifecycle.start_run(db, users["admin"], setup["project_id"], export_id=setup["export_id"],
                       config_id=setup["config_id"], python=sys.executable, script="/tmp/x.py")
    assert run_lifecycle.list_runs(db, setup["project_id"]) == []


def test_a_reviewer_cannot_resume_or_retrain_an_external_runner_run(db, setup, stand_in, users):
    run = start(db, setup, stand_in, num_train_steps=10)
    run_lifecycle.wait_for_run(db, run["id"])
    db["runs"].update(run["id"], {"status": "failed"})
    for again in (lambda: run_lifecycle.resume_run(db, users["reviewer"], run["id"]),
                  lambda: run_lifecycle.retrain_run(db, users["reviewer"], run["id"])):
        with pytest.raises(PermissionError, match="reviewer \\(reviewer\\) may not external runner"):
            again()
    assert [r["id"] for r in run_lifecycle.list_runs(db, setup["project_id"])] == [run["id"]]


def test_a_runner_inside_the_data_folder_is_refused(data_dir, tmp_path):
    uploaded = data_dir / "uploads" / "evil.py"
    with pytest.raises(Invalid, match="inside the data folder"):
        server_settings.set_runner(CLI_ACTOR, "evil", sys.executable, str(uploaded))
    os.environ["BOXWISE_RUNNERS"] = json.dumps({"evil": {"python": sys.executable, "script": str(uploaded)}})
    try:
        with pytest.raises(Invalid, match="inside the data folder"):
            server_settings.runner("evil")
    finally:
        del os.environ["BOXWISE_RUNNERS"]


def test_a_row_with_a_typed_interpreter_is_never_run(db, setup, stand_in, tmp_path):
    """Rows an older Boxwise queued with a browser-typed interpreter and script fail with the
    reason instead of running."""
    marker = tmp_path / "ran"
    script = tmp_path / "typed.py"
    script.write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    run = run_lifecycle._insert_run(db, setup["actor"], setup["project_id"], kind="train", text=CONFIG,
                           export_id=setup["export_id"], config_id=setup["config_id"])
    db["runs"].update(run["id"], {"python": sys.executable, "script": str(script)})
    run_lifecycle.pump_queue(db)
    failed = run_lifecycle.get_run(db, run["id"])
    assert failed["status"] == "failed" and "typed by a user" in failed["error"]
    assert not marker.exists()


def test_a_config_with_problems_is_refused_with_every_problem(db, setup, stand_in, data_dir, project):
    bad = CONFIG.replace("learning_rate_base: 0.04", "learning_rate_base: 0.001")
    config = saved_configs.save_config(db, setup["actor"], setup["project_id"], "bad", bad)
    with pytest.raises(Invalid) as refused:
        run_lifecycle.start_run(db, setup["actor"], setup["project_id"], export_id=setup["export_id"],
                       config_id=config["id"], runner=stand_in)
    assert "learning_rate_base (0.001) must be ≥ warmup_learning_rate (0.01)" in str(refused.value)
    assert run_lifecycle.list_runs(db, setup["project_id"]) == []


def test_a_missing_interpreter_fails_the_run_with_the_reason(db, setup, stand_in, tmp_path):
    server_settings.set_runner(CLI_ACTOR, "gone", "/nonexistent/python", str(tmp_path / "stand_in_trainer.py"))
    run = run_lifecycle.start_run(db, setup["actor"], setup["project_id"], export_id=setup["export_id"],
                         config_id=setup["config_id"], runner="gone")
    assert run["status"] == "failed" and "could not start '/nonexistent/python'" in run["error"]


def test_progress_summary_and_curves_come_from_the_progress_files(db, setup, stand_in):
    run = start(db, setup, stand_in, num_train_steps=12)
    run = run_lifecycle.wait_for_run(db, run["id"])
    assert run["status"] == "succeeded"
    summary = run_artefacts.progress_summary(run)
    assert summary["step"] == 12 and summary["total_steps"] == 12 and summary["fraction"] == 1.0
    assert summary["devices"] == ["CPU"] and summary["images_per_sec"] == 400.0
    curves = run_artefacts.loss_curves(run)
    assert {"step": 12, "curve": "total", "value": 1.0 / 12} in curves
    assert {c["curve"] for c in curves} == {"total", "classification", "localization", "learning_rate"}
    assert [n for n, _ in run_artefacts.checkpoints(run["model_dir"])] == [10, 12]


def test_retrain_starts_a_detection_fine_tune_from_the_latest_checkpoint_on_the_newest_version(
        db, setup, stand_in, data_dir, project):
    run = start(db, setup, stand_in, num_train_steps=10)
    run_lifecycle.wait_for_run(db, run["id"])
    newest = make_dataset_version(db, project, data_dir, classes=("cat", "dog", "bird"), shards=3)
    retrain = run_lifecycle.retrain_run(db, setup["actor"], run["id"], num_train_steps=15)
    assert retrain["export_id"] == newest and retrain["parent_run_id"] == run["id"]
    checkpoint = str(Path(run["model_dir"]) / "ckpt-10")
    assert retrain["fine_tune_checkpoint"] == checkpoint
    text = Path(retrain["model_dir"], "pipeline.config").read_text()
    assert f'fine_tune_checkpoint: "{checkpoint}"' in text
    assert 'fine_tune_checkpoint_type: "detection"' in text and "of-00003" in text
    assert run_lifecycle.wait_for_run(db, retrain["id"])["status"] == "succeeded"


# ---------------------------------------------------------------- the real trainer


@pytest.fixture
def real_setup(db, project, users, data_dir):
    """A dataset version of generated shapes (64×64 TFRecords) and the quick template shrunk to it."""
    from backend.training import templates
    from tests.training import shapes
    folder = data_dir / "exports" / "shapes"
    shapes.write_dataset(folder, "train", 8, size=64, shards=2)
    shapes.write_dataset(folder, "val", 4, size=64, shards=1, seed=1)
    shapes.write_label_map(folder)
    export_id = db["exports"].insert({"project_id": project["id"], "format": "tfrecord",
                                      "path": str(folder), "created_at": time.time()}).last_pk
    text = templates.render_template("quick", batch_size=2, num_steps=10000)
    for side in ("height", "width"):
        text = text.replace(f"{side}: 128", f"{side}: 64")
    config = saved_configs.save_config(db, users["reviewer"], project["id"], "tiny", text)
    return {"export_id": export_id, "config_id": config["id"], "project_id": project["id"],
            "actor": users["reviewer"]}


def start_real(db, setup, **kwargs):
    return run_lifecycle.start_run(db, setup["actor"], setup["project_id"], export_id=setup["export_id"],
                          config_id=setup["config_id"], **kwargs)


@pytest.mark.slow
def test_real_trainer_progresses_cancels_resumes_and_is_settled_after_kill(db, real_setup, data_dir):
    run = start_real(db, real_setup)
    assert json.loads(run["command"])[1:4] == ["-m", "backend", "train"]
    first = poll(lambda: step_of(run), timeout=600)
    poll(lambda: step_of(run) > first, timeout=600)  # progress advances

    run_lifecycle.cancel_run(db, real_setup["actor"], run["id"])
    run = run_lifecycle.wait_for_run(db, run["id"], timeout=600)
    assert run["status"] == "cancelled", run["error"]
    stopped = progress.read_status(run["model_dir"])
    assert stopped["checkpoint"] == run_artefacts.latest_checkpoint(run["model_dir"])

    run_lifecycle.resume_run(db, real_setup["actor"], run["id"])
    poll(lambda: step_of(run) > stopped["step"], timeout=600)
    assert f"(from step {stopped['step']})" in "\n".join(run_artefacts.log_tail(run, 200))

    run = run_lifecycle.get_run(db, run["id"])
    os.kill(run["pid"], signal.SIGKILL)
    poll(lambda: not run_processes.process_alive(run["pid"], run["pid_start_time"]))
    restarted = database.connect(data_dir / "boxwise.db")
    assert run_lifecycle.settle_runs(restarted) == [run["id"]]
    settled = run_lifecycle.get_run(restarted, run["id"])
    assert settled["status"] == "failed" and "killed by SIGKILL" in settled["error"]
    restarted.conn.close()


@pytest.mark.slow
def test_real_run_is_evaluated_exported_as_a_model_and_retrained(db, real_setup):
    from backend import model_registry
    run = start_real(db, real_setup, num_train_steps=3)
    run = run_lifecycle.wait_for_run(db, run["id"], timeout=900)
    assert run["status"] == "succeeded", run["error"]

    evaluation = run_lifecycle.start_evaluation(db, real_setup["actor"], run["id"])
    evaluation = run_lifecycle.wait_for_run(db, evaluation["id"], timeout=900)
    assert evaluation["status"] == "succeeded", run_artefacts.log_tail(evaluation)
    [scored] = run_artefacts.evaluations(run)
    assert scored["checkpoint"] == run_artefacts.latest_checkpoint(run["model_dir"])
    assert 0.0 <= scored["metrics"][run_artefacts.MAP] <= 1.0 and scored["step"] == 3
    assert sorted(scored["per_class"]) == ["disc", "square"]
    assert [row["class"] for row in run_views.per_class_rows(run)] == ["disc", "square"]

    export = run_lifecycle.export_model(db, real_setup["actor"], run["id"], "best")
    export = run_lifecycle.wait_for_run(db, export["id"], timeout=900)
    assert export["status"] == "succeeded", export["error"] or run_artefacts.log_tail(export)
    [model] = model_registry.list_models(db, real_setup["project_id"])
    assert model["run_id"] == run["id"] and model["available"]

    retrain = run_lifecycle.retrain_run(db, real_setup["actor"], run["id"], num_train_steps=2)
    assert retrain["fine_tune_checkpoint"] == run_artefacts.latest_checkpoint(run["model_dir"])
    retrain = run_lifecycle.wait_for_run(db, retrain["id"], timeout=900)
    assert retrain["status"] == "succeeded", retrain["error"]
    assert "fine-tun" in "\n".join(run_artefacts.log_tail(retrain, 200)).lower()


@pytest.mark.parametrize("evaluated, status", [(True, "succeeded"), (False, "failed")])
def test_evaluation_that_ended_while_the_dashboard_was_down_is_settled_by_its_metrics(
        db, setup, stand_in, data_dir, evaluated, status):
    run = start(db, setup, stand_in, num_train_steps=3)
    run = run_lifecycle.wait_for_run(db, run["id"])
    latest = Path(run_artefacts.latest_checkpoint(run["model_dir"])).name
    evaluation_dir = Path(run["model_dir"]) / run_artefacts.EVALUATION_DIR
    evaluation_dir.mkdir()
    metrics = {latest: {"checkpoint": latest, "step": 3, "metrics": {run_artefacts.MAP: 0.5}}} if evaluated else {}
    (evaluation_dir / "metrics.json").write_text(json.dumps(metrics))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process this dashboard did not start: no exit code to read
    log = data_dir / "eval-job" / "log.txt"
    log.parent.mkdir()
    log.write_text("evaluating\n")
    eval_id = db["runs"].insert({
        "project_id": setup["project_id"], "kind": "eval", "status": "running", "pid": gone.pid,
        "pid_start_time": 1.0, "parent_run_id": run["id"], "model_dir": str(evaluation_dir),
        "log_path": str(log), "created_at": time.time()}).last_pk

    restarted = database.connect(data_dir / "boxwise.db")
    assert run_lifecycle.settle_runs(restarted) == [eval_id]
    settled = run_lifecycle.get_run(restarted, eval_id)
    assert settled["status"] == status
    assert (settled["error"] is None) == evaluated
    restarted.conn.close()
