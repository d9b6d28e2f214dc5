"""The trainer as users run it: refusals before training, NaN, SIGTERM, resume, the shared fpnlite
config, and end to end (train → loss falls → evaluate → export → find the objects)."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backend.errors import Invalid
from backend.config_document import ConfigDocument
from backend.training import progress
from backend.training.train import run_training
from tests.helpers import SHARED_TFOD, needs_shared_tfod

REPO = Path(__file__).resolve().parents[2]
SHARED = SHARED_TFOD / "configs"
FPNLITE = SHARED / "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config"


def _events(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalar events in a TensorBoard directory, read with TensorFlow only: {tag: [(step, value)]}."""
    import tensorflow as tf
    found: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                found.setdefault(value.tag, []).append((event.step, number))
    return found


def test_missing_fine_tune_checkpoint_stops_at_once_naming_the_field(tiny_config_path, tmp_path):
    config = tiny_config_path()
    doc = ConfigDocument.load(config)
    doc.set("train_config.fine_tune_checkpoint", str(tmp_path / "missing.weights.h5"))
    doc.set("train_config.fine_tune_checkpoint_type", "classification")
    doc.save()
    started = time.time()
    with pytest.raises(Invalid) as caught:
        run_training(config, tmp_path / "run")
    message = str(caught.value)
    assert "train_config.fine_tune_checkpoint" in message and "missing.weights.h5" in message
    assert "does not exist" in message and "nothing is downloaded" in message
    status = progress.read_status(tmp_path / "run")
    assert status["state"] == "failed" and status["error"] == message and status["step"] == 0
    assert not list((tmp_path / "run").glob("ckpt-*")) and time.time() - started < 30


@needs_shared_tfod
def test_unsupported_config_is_refused_before_training(tmp_path):
    source = SHARED / "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config"
    with pytest.raises(Invalid) as caught:
        run_training(source, tmp_path / "run", num_train_steps=1)
    assert "line 9: model.faster_rcnn" in str(caught.value)
    assert progress.read_status(tmp_path / "run")["state"] == "failed"


@pytest.mark.slow
def test_nan_loss_stops_the_run_naming_the_step(tiny_config_path, tmp_path):
    config = tiny_config_path(num_steps=50, batch_size=2)
    doc = ConfigDocument.load(config)
    doc.set("train_config.optimizer.adam_optimizer.learning_rate.cosine_decay_learning_rate.learning_rate_base",
            1e30)
    doc.set("train_config.optimizer.adam_optimizer.learning_rate.cosine_decay_learning_rate.warmup_steps", 0)
    doc.save()
    with pytest.raises(Invalid) as caught:
        run_training(config, tmp_path / "run", log_every_n=1)
    status = progress.read_status(tmp_path / "run")
    assert status["state"] == "failed"
    assert f"the loss became nan at step {status['step']} " in str(caught.value) or \
        f"the loss became inf at step {status['step']} " in str(caught.value)
    assert 1 <= status["step"] < 50


@needs_shared_tfod  # line numbers and the header comment are the OD API file's own
def test_shared_fpnlite_config_trains_with_only_paths_and_sizes_changed(shapes_data, tmp_path, caplog):
    """The TF OD API's own ssd_mobilenet_v2_fpnlite_320x320 config, its TPU fields included; the
    classification starting point is a local Keras weights file (nothing is downloaded)."""
    import keras
    data, train_glob, eval_glob, _ = shapes_data
    weights = tmp_path / "mobilenet_v2_no_top.weights.h5"
    keras.applications.MobileNetV2(input_shape=(64, 64, 3), include_top=False, weights=None).save_weights(weights)
    doc = ConfigDocument.load(FPNLITE)
    edits = {
        "model.ssd.image_resizer.fixed_shape_resizer.height": 64,
        "model.ssd.image_resizer.fixed_shape_resizer.width": 64,
        "train_config.batch_size": 2,
        "train_config.fine_tune_checkpoint": str(weights),
        "train_input_reader.label_map_path": str(data / "label_map.pbtxt"),
        "train_input_reader.tf_record_input_reader.input_path": train_glob,
        "eval_input_reader.label_map_path": str(data / "label_map.pbtxt"),
        "eval_input_reader.tf_record_input_reader.input_path": eval_glob,
    }
    for path, value in edits.items():
        doc.set(path, value)
    changed = [a for a, b in zip(FPNLITE.read_text().splitlines(), doc.text.splitlines()) if a != b]
    assert len(changed) == len(edits)
    doc.save(tmp_path / "pipeline.config")
    caplog.set_level(logging.INFO, logger="backend.training.train")
    status = run_training(tmp_path / "pipeline.config", tmp_path / "run", num_train_steps=2)
    assert status["state"] == "succeeded" and status["step"] == 2
    assert ("ignored: train_config.sync_replicas (line 145): TF 1 distributed training (SyncReplicasOptimizer)"
            in caplog.text)
    assert ("ignored: train_config.replicas_to_aggregate (line 147): TF 1 distributed training "
            "(SyncReplicasOptimizer)" in caplog.text)
    copy = (tmp_path / "run" / "pipeline.config").read_text()
    assert copy.startswith("# SSD with Mobilenet v2 FPN-lite") and "  num_steps: 2\n" in copy


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_sigterm_checkpoints_and_cancels_then_rerun_resumes(tiny_config_path, tmp_path):
    config = tiny_config_path(num_steps=100000, batch_size=2, augment=False)
    model_dir = tmp_path / "run"
    command = [sys.executable, "-m", "backend", "train", f"--pipeline_config_path={config}",
               f"--model_dir={model_dir}", "--checkpoint_every_n=100000"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = open(tmp_path / "train.log", "w")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        first = _wait_for(lambda: progress.read_progress(model_dir), 240, "the first progress snapshot")
        assert first["total_steps"] == 100000 and first["phase"] == "train" and first["devices"] == ["CPU"]
        assert set(first["losses"]) == {"classification", "localization", "regularization", "total"}
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
    # The thread counts the trainer chose for this machine (64 px, batch 2): said in its log.
    from backend.training.train import chosen_op_threads
    cpus = len(os.sched_getaffinity(0))
    chosen = chosen_op_threads(64, 64, 2, cpus, 0, env)
    logged = (tmp_path / "train.log").read_text()
    if chosen:
        assert (f"threads: 1 per op, {cpus} ops side by side ({cpus} CPUs, 64x64 input, batch 2 per replica; "
                "set TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS to choose); in effect: 1 intra-op, "
                f"{cpus} inter-op") in logged
    else:
        assert "threads: TensorFlow's default" in logged or "from the environment" in logged
    status = progress.read_status(model_dir)
    assert status["state"] == "cancelled" and status["error"] is None
    assert status["step"] >= first["step"] and status["checkpoint"] == str(model_dir / "ckpt-1")
    assert (model_dir / "ckpt-1.index").exists()

    # Resume: the same model_dir continues from the checkpoint's step.
    resumed = run_training(config, model_dir, num_train_steps=status["step"] + 3, log_every_n=1)
    assert resumed["state"] == "succeeded" and resumed["step"] == status["step"] + 3
    steps = [row["step"] for row in progress.read_history(model_dir)]
    assert steps[-3:] == [status["step"] + 1, status["step"] + 2, status["step"] + 3]
    assert resumed["checkpoint"] == str(model_dir / "ckpt-2")


@pytest.mark.slow
def test_end_to_end_train_evaluate_export_and_find_the_objects(shapes_model, tmp_path):
    """The session's `shapes_model` (tests/conftest.py: `train` 300 steps with a checkpoint every
    150, then `export-model`) is the run checked here; evaluation runs here over its checkpoints."""
    import tensorflow as tf
    from PIL import Image
    import io
    import random

    from backend.__main__ import main
    from tests.training.conftest import SHAPES
    from tests.training.shapes import make_image

    model_dir = shapes_model["run"]
    config = shapes_model["root"] / "pipeline.config"
    assert progress.read_status(model_dir)["state"] == "succeeded"
    history = progress.read_history(model_dir)
    assert history[-1]["step"] == 300
    early = np.mean([row["losses"]["total"] for row in history[:3]])
    late = np.mean([row["losses"]["total"] for row in history[-3:]])
    assert late < 0.6 * early, (early, late)
    assert sorted(p.name for p in model_dir.glob("ckpt-*.index")) == ["ckpt-1.index", "ckpt-2.index"]
    events = _events(model_dir / "train")
    assert {"Loss/classification_loss", "Loss/localization_loss", "Loss/regularization_loss", "Loss/total_loss",
            "learning_rate", "steps_per_sec"} <= set(events)
    assert events["Loss/total_loss"][-1][0] == 300

    # Evaluation mode over the run's checkpoints.
    eval_dir = tmp_path / "eval_run"
    assert main(["train", f"--pipeline_config_path={config}", f"--model_dir={eval_dir}",
                 f"--checkpoint_dir={model_dir}", "--eval_timeout=1"]) == 0
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert sorted(metrics) == ["ckpt-1", "ckpt-2"]
    final = metrics["ckpt-2"]
    assert final["step"] == 300 and final["num_images"] == 16
    assert final["metrics"]["DetectionBoxes_Precision/mAP@.50IOU"] > 0.4, final["metrics"]
    assert json.loads((eval_dir / "eval" / "metrics-ckpt-2.json").read_text()) == final
    assert "DetectionBoxes_Recall/AR@100" in _events(eval_dir / "eval")

    # Export and find the objects through serving_default, at a size the model was not trained at.
    out = shapes_model["export"]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "label_map.pbtxt", "pipeline.config", "saved_model"]
    assert "name: 'disc'" in (out / "label_map.pbtxt").read_text()
    detect = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    found_objects = 0
    rng = random.Random(7)
    for _ in range(4):
        encoded, objects = make_image(96, rng, **SHAPES)
        image = np.array(Image.open(io.BytesIO(encoded)).convert("RGB"))
        result = detect(input_tensor=tf.constant(image[np.newaxis]))
        assert result["detection_boxes"].shape[0] == 1 and result["detection_boxes"].shape[2] == 4
        assert result["detection_classes"].dtype == tf.float32
        label, xmin, ymin, xmax, ymax = objects[0]
        # The best-scoring detection of the object's class must sit on the object.
        classes = result["detection_classes"][0].numpy()
        best = int(np.argmax(classes == label))  # detections come sorted by score
        assert classes[best] == label
        ymin_p, xmin_p, ymax_p, xmax_p = (result["detection_boxes"][0, best].numpy() * 96).tolist()
        inter = max(0, min(xmax, xmax_p) - max(xmin, xmin_p)) * max(0, min(ymax, ymax_p) - max(ymin, ymin_p))
        union = (xmax - xmin) * (ymax - ymin) + (xmax_p - xmin_p) * (ymax_p - ymin_p) - inter
        if inter / union > 0.5:
            found_objects += 1
    assert found_objects >= 3


# Keras applies gradients all-reduced by SUM across replicas, so the trainer divides each
# replica's loss by the replica count; if that ever became a MEAN, every multi-GPU run would
# train at 1/N of its learning rate. Run in a fresh process: logical devices must be set first.
_AGGREGATION = """
import tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    w = keras.Variable(0.0)
    optimizer = keras.optimizers.SGD(learning_rate=1.0)
    optimizer.build([w])
def replica_step(x):
    with tf.GradientTape() as tape:
        loss = w * x / strategy.num_replicas_in_sync
    optimizer.apply_gradients(zip(tape.gradient(loss, [w]), [w]))
@tf.function
def step():
    x = strategy.experimental_distribute_values_from_function(lambda c: tf.constant(c.replica_id_in_sync_group + 1.0))
    strategy.run(replica_step, args=(x,))
step()
print(float(w.numpy()))
"""


def test_small_cpu_steps_run_one_thread_per_op_with_two_ops_side_by_side():
    """On 2 CPUs without a GPU, steps of at most 160x160x8 input pixels per replica get 1 intra-op
    and 2 inter-op threads (BENCHMARKS.md, "Threads"); anything else keeps TensorFlow's choice."""
    from backend.training.train import SMALL_STEP_PIXELS, chosen_op_threads
    assert SMALL_STEP_PIXELS == 204_800
    assert chosen_op_threads(128, 128, 8, 2, 0, {}) == (1, 2)
    assert chosen_op_threads(160, 160, 8, 2, 0, {}) == (1, 2)
    assert chosen_op_threads(320, 320, 2, 2, 0, {}) == (1, 2)
    assert chosen_op_threads(192, 192, 8, 2, 0, {}) is None   # 294,912 pixels: TensorFlow's default
    assert chosen_op_threads(256, 256, 8, 2, 0, {}) is None
    assert chosen_op_threads(128, 128, 8, 4, 0, {}) is None   # not measured on more cores
    assert chosen_op_threads(128, 128, 8, 1, 0, {}) is None
    assert chosen_op_threads(128, 128, 8, 2, 1, {}) is None   # a GPU runs the ops
    assert chosen_op_threads(128, 128, 8, 2, 0, {"TF_NUM_INTRAOP_THREADS": "2"}) is None
    assert chosen_op_threads(128, 128, 8, 2, 0, {"TF_NUM_INTEROP_THREADS": "1"}) is None


def test_thread_counts_are_kept_once_tensorflow_has_started(monkeypatch):
    import tensorflow as tf

    from backend.training import train
    float(tf.constant(1.0) + 1.0)  # this process's TensorFlow has started
    monkeypatch.setattr(train.os, "sched_getaffinity", lambda pid: {0, 1})
    for name in train.THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    assert train.set_op_threads(128, 128, 8) == "threads: kept (TensorFlow had already started in this process)"
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "3")
    assert train.set_op_threads(128, 128, 8) == "threads: TF_NUM_INTRAOP_THREADS=3 from the environment"
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS")
    assert train.set_op_threads(256, 256, 8) == "threads: TensorFlow's default (2 CPUs, 0 GPUs)"


@pytest.mark.slow
def test_two_replicas_train_with_all_reduced_gradients_and_a_checkpoint_one_device_loads(tiny_config_path, tmp_path):
    """MirroredStrategy over two logical CPU devices (BOXWISE_CPU_REPLICAS): what a 2-GPU machine
    runs, minus the GPUs."""
    from backend.training.train import CPU_REPLICAS_ENV, load_detector

    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    # Per-replica gradients 1 and 2 (each replica's loss divided by 2, then summed): one SGD step
    # of learning rate 1 must move w by their mean, 1.5.
    aggregated = subprocess.run([sys.executable, "-c", _AGGREGATION], env=env, capture_output=True,
                                text=True, timeout=300)
    assert aggregated.returncode == 0, aggregated.stderr[-2000:]
    assert float(aggregated.stdout.strip().splitlines()[-1]) == -1.5

    config = tiny_config_path(num_steps=4, batch_size=8, augment=False)
    model_dir = tmp_path / "mirrored"
    trained = subprocess.run([sys.executable, "-m", "backend", "train", f"--pipeline_config_path={config}",
                              f"--model_dir={model_dir}", "--checkpoint_every_n=2"], cwd=REPO,
                             env={**env, CPU_REPLICAS_ENV: "2"}, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "batch 8 over 2 replicas (4 each)" in trained.stderr
    status = progress.read_status(model_dir)
    assert status["state"] == "succeeded" and status["step"] == 4
    assert all(np.isfinite(row["losses"]["total"]) for row in progress.read_history(model_dir))
    # The mirrored checkpoint restores into a plain one-device detector, as export and evaluation do.
    _, model = load_detector(config, str(model_dir))
    assert model.predictor.class_head.bias.numpy().shape == (6 * (2 + 1),)  # 6 anchors x (2 classes + background)


@pytest.mark.slow
def test_two_workers_train_together_from_one_file_chief_writes_the_model_dir(shapes_data, tiny_config_path, tmp_path):
    """MultiWorkerMirroredStrategy with TF_CONFIG, two worker processes on this machine; the
    train input is a single file, fewer than the workers (each then reads every other record)."""
    import re
    import socket

    data = shapes_data[0]
    config = tiny_config_path(num_steps=4, batch_size=4, augment=False)
    doc = ConfigDocument.load(config)
    doc.set("train_input_reader.tf_record_input_reader.input_path[0]", str(sorted(data.glob("train.record-*"))[0]))
    config.write_text(doc.text)
    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    model_dir = tmp_path / "multi"
    processes = []
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "backend", "train", f"--pipeline_config_path={config}", f"--model_dir={model_dir}",
             "--num_workers=2", "--checkpoint_every_n=2"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    logs = []
    try:
        for process in processes:
            logs.append(process.communicate(timeout=600)[1])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert [p.returncode for p in processes] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    status = progress.read_status(model_dir)
    assert status["state"] == "succeeded" and status["step"] == 4
    assert sorted(p.name for p in model_dir.glob("ckpt-*.index")) == ["ckpt-1.index", "ckpt-2.index"]
    assert (model_dir / "worker-1" / "ckpt-2.index").exists()   # the other worker saves aside
    losses = [re.findall(r"step (\d+)/4 loss ([\d.]+)", log) for log in logs]
    assert len(losses[0]) == 4 and losses[0] == losses[1]        # all-reduced: the same loss on both


@pytest.mark.slow
def test_mixed_precision_trains_and_exports_a_float32_model(tiny_config_path, tmp_path):
    """`--mixed_precision` (mixed_float16, loss scaling) in its own process, as the global Keras
    policy it sets must not leak into other tests; the export is float32 either way."""
    import tensorflow as tf

    from backend.training.savedmodel_export import export_model

    config = tiny_config_path(num_steps=3, batch_size=4, augment=False)
    model_dir = tmp_path / "mixed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    trained = subprocess.run([sys.executable, "-m", "backend", "train", f"--pipeline_config_path={config}",
                              f"--model_dir={model_dir}", "--mixed_precision"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert progress.read_status(model_dir)["state"] == "succeeded"
    history = progress.read_history(model_dir)
    assert [row["step"] for row in history][-1] == 3
    assert all(np.isfinite(row["losses"]["total"]) for row in history)
    out = export_model(config, model_dir, tmp_path / "exported")
    detect = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    result = detect(input_tensor=tf.zeros([1, 64, 64, 3], tf.uint8))
    assert {result[k].dtype for k in ("detection_boxes", "detection_scores", "detection_classes")} == {tf.float32}
    assert np.isfinite(result["detection_scores"].numpy()).all()
