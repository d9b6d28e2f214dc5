"""TensorBoard event files read without TensorFlow: the curves of runs of other trainers."""
from __future__ import annotations

import pytest

from backend import events
@pytest.fixture
def event_dir(tmp_path):
    """Events as TF 2 writes them (scalars as tensors), with the TF OD API's training tags."""
    import tensorflow as tf
    from backend.training.train import write_scalars
    writer = tf.summary.create_file_writer(str(tmp_path / "train"))
    for step in (100, 200, 300):
        write_scalars(writer, step, {"Loss/classification_loss": 1.0 / step, "Loss/localization_loss": 0.5 / step,
                                     "Loss/total_loss": 1.5 / step, "steps_per_sec": 2.5})
        with writer.as_default(step=step):
            tf.summary.write("learning_rate", tf.constant(0.01, tf.float64))
    writer.close()
    return tmp_path / "train"


def test_scalars_of_tf2_event_files_are_read_by_tag(event_dir):
    scalars = events.read_scalars(event_dir)
    assert sorted(scalars) == ["Loss/classification_loss", "Loss/localization_loss", "Loss/total_loss",
                               "learning_rate", "steps_per_sec"]
    assert [step for step, _, _ in scalars["Loss/total_loss"]] == [100, 200, 300]
    assert scalars["Loss/total_loss"][1][2] == pytest.approx(1.5 / 200)
    assert scalars["learning_rate"][0][2] == 0.01  # a float64 tensor


def test_training_history_has_the_progress_file_shape(event_dir):
    history = events.training_history(event_dir)
    assert [s["step"] for s in history] == [100, 200, 300]
    assert history[-1]["losses"] == {"classification": pytest.approx(1 / 300),
                                     "localization": pytest.approx(0.5 / 300),
                                     "total": pytest.approx(1.5 / 300)}
    assert history[-1]["steps_per_sec"] == 2.5 and history[-1]["learning_rate"] == 0.01
    assert history[0]["started_at"] <= history[-1]["time"]


def test_a_torn_last_record_ends_the_file_quietly(event_dir):
    [path] = event_dir.glob("events.out.tfevents.*")
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    steps = [step for step, _, _ in events.read_scalars(event_dir)["learning_rate"]]  # written last
    assert steps == [100, 200]


def test_runs_of_other_trainers_show_progress_from_their_events(event_dir, tmp_path):
    from backend import run_artefacts
    model_dir = event_dir.parent
    (model_dir / "pipeline.config").write_text("train_config {\n  num_steps: 600\n}\n")
    run = {"model_dir": str(model_dir), "log_path": str(model_dir / "train.log"), "status": "running",
           "script": "/opt/models/research/object_detection/model_main_tf2.py", "num_train_steps": None}
    summary = run_artefacts.progress_summary(run)
    assert (summary["step"], summary["total_steps"], summary["fraction"]) == (300, 600, 0.5)
    assert summary["eta_seconds"] == 300 / 2.5
    assert summary["losses"]["total"] == pytest.approx(1.5 / 300)
    assert [row["step"] for row in run_artefacts.loss_curves(run) if row["curve"] == "total"] == [100, 200, 300]
