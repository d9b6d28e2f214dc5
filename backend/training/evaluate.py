"""Evaluation mode (`python -m backend train --checkpoint_dir ...`): COCO metrics per checkpoint.

`run_evaluation(pipeline_config_path, model_dir, checkpoint_dir)` evaluates every checkpoint
in `checkpoint_dir` not evaluated yet, then waits for new ones (as model_main_tf2.py does) until
the training run there has a final status, or `eval_timeout` seconds pass without a new one.

Files it writes:

- `model_dir/eval/events.out.tfevents.*`   TensorBoard, at the checkpoint's training step, with the
  TF OD API tags (`DetectionBoxes_Precision/mAP`, `.../mAP@.50IOU`, `.../mAP@.75IOU`,
  `.../mAP (small|medium|large)`, `DetectionBoxes_Recall/AR@1|AR@10|AR@100`, per category
  when `eval_config.include_metrics_per_category`)
- `model_dir/eval/metrics-ckpt-N.json`     `{"checkpoint": "ckpt-N", "step": int, "num_images": int,
  "metrics": {tag: value}}` for one checkpoint
- `model_dir/metrics.json`                 `{"ckpt-N": <that same object>, ...}`: every checkpoint so far

`evaluate_checkpoint(...)` scores one checkpoint and returns that object without writing.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import tensorflow as tf

from backend import atomic
from backend.errors import Invalid, NotFound
from backend.evaluation import evaluate_coco
from backend.formats import label_map as label_maps
from backend.training import progress
from backend.training.anchors import generate_anchors
from backend.training.training_config import TrainingConfig
from backend.training.data import eval_dataset
from backend.training.detect import postprocess
from backend.training.network import preprocess_images
from backend.training.train import load_detector, write_scalars

log = logging.getLogger(__name__)



def _categories(config: TrainingConfig) -> list[dict[str, Any]]:
    path = (config.eval_input and config.eval_input.label_map_path) or config.train_input.label_map_path
    if path and Path(path).is_file():
        return [{"id": item.id, "name": item.name} for item in label_maps.read(path).items]
    return [{"id": i, "name": f"class_{i}"} for i in range(1, config.model.num_classes + 1)]


def checkpoint_step(checkpoint_path: str) -> int:
    """The training step stored in a checkpoint (`optimizer/_iterations`, else the OD API's `step`), 0 when absent."""
    reader = tf.train.load_checkpoint(checkpoint_path)
    keys = reader.get_variable_to_shape_map()
    for key in ("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE", "step/.ATTRIBUTES/VARIABLE_VALUE"):
        if key in keys:  # Boxwise's and the TF OD API's model_dir checkpoints
            return int(reader.get_tensor(key))
    return 0


def predict(config: TrainingConfig, model, sample_1_of_n: int = 1, max_images: int = 0):
    """Run the model over the eval input: `(groundtruth, detections, image_sizes)` for `coco_metrics`,
    boxes normalised to each image."""
    if config.eval_input is None:
        raise Invalid("the config has no eval_input_reader")
    anchors = tf.constant(generate_anchors(config.model.height, config.model.width, config.model.anchors))

    @tf.function
    def detect(images, valid):
        outputs = model(preprocess_images(images), training=False)
        return postprocess(outputs, anchors, config.post_processing, valid, config.box_scales)

    groundtruth, detections, sizes = [], [], {}
    dataset = eval_dataset(config.eval_input, config.resizer, config.eval_batch_size,
                           config.max_number_of_boxes, sample_1_of_n)
    for batch in dataset:
        found = detect(batch["images"], batch["valid"])
        for i in range(int(batch["images"].shape[0])):
            key = batch["source_id"][i].numpy().decode("utf-8", "replace") or f"image-{len(groundtruth)}"
            if key in sizes:
                key = f"{key}#{len(groundtruth)}"
            count = int(batch["num_boxes"][i])
            groundtruth.append({"image_id": key, "boxes": batch["boxes"][i, :count].numpy(),
                                "classes": batch["classes"][i, :count].numpy()})
            n = int(found["num_detections"][i])
            detections.append({"image_id": key, "boxes": found["detection_boxes"][i, :n].numpy(),
                               "classes": found["detection_classes"][i, :n].numpy(),
                               "scores": found["detection_scores"][i, :n].numpy()})
            sizes[key] = tuple(int(v) for v in batch["original_size"][i].numpy())
            if max_images and len(groundtruth) >= max_images:
                return groundtruth, detections, sizes
    return groundtruth, detections, sizes


def evaluate_checkpoint(pipeline_config_path: str | os.PathLike, checkpoint_path: str,
                        sample_1_of_n: int = 1, per_category: bool | None = None) -> dict[str, Any]:
    """`{"checkpoint", "step", "num_images", "metrics", "pr_curves"}` for one checkpoint prefix
    (`.../ckpt-N`); `pr_curves` maps class names to precision at IoU 0.5 over
    `evaluation.RECALL_POINTS`."""
    config, model = load_detector(pipeline_config_path, checkpoint_path)
    groundtruth, detections, sizes = predict(config, model, sample_1_of_n)
    if not groundtruth:
        raise NotFound("the eval input has no examples")
    scored = evaluate_coco(groundtruth, detections, _categories(config), sizes,
                           per_category=config.eval_per_category if per_category is None else per_category)
    return {"checkpoint": os.path.basename(checkpoint_path), "step": checkpoint_step(checkpoint_path),
            "num_images": len(groundtruth), "metrics": scored.metrics, "pr_curves": scored.pr_curves}


def record_metrics(model_dir: str | os.PathLike, result: dict[str, Any]) -> None:
    """Write one checkpoint's result: TensorBoard events, `eval/metrics-ckpt-N.json`, `metrics.json`."""
    model_dir = Path(model_dir)
    eval_dir = model_dir / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    writer = tf.summary.create_file_writer(str(eval_dir))
    write_scalars(writer, result["step"], result["metrics"])
    writer.close()
    atomic.write_json(eval_dir / f"metrics-{result['checkpoint']}.json", result)
    everything = progress.read_metrics(model_dir)
    everything[result["checkpoint"]] = result
    atomic.write_json(model_dir / progress.METRICS_FILE, everything)


def run_evaluation(pipeline_config_path: str | os.PathLike, model_dir: str | os.PathLike,
                   checkpoint_dir: str | os.PathLike, *, eval_timeout: float = 3600,
                   sample_1_of_n: int = 1, poll_seconds: float = 10.0) -> dict[str, Any]:
    """Evaluate checkpoints as they appear; returns `metrics.json`'s content."""
    model_dir, checkpoint_dir = Path(model_dir), Path(checkpoint_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    if not checkpoint_dir.is_dir():
        raise NotFound(f"--checkpoint_dir {str(checkpoint_dir)!r} does not exist")
    last_new = time.time()
    while True:
        state = tf.train.get_checkpoint_state(str(checkpoint_dir))
        paths = list(state.all_model_checkpoint_paths) if state else []
        done = progress.read_metrics(model_dir)
        pending = [p for p in paths if os.path.basename(p) not in done and tf.io.gfile.glob(p + ".index")]
        for path in pending:
            log.info("evaluating %s", path)
            result = evaluate_checkpoint(pipeline_config_path, path, sample_1_of_n)
            record_metrics(model_dir, result)
            log.info("%s step %d: mAP %.4f mAP@.50IOU %.4f", result["checkpoint"], result["step"],
                     result["metrics"]["DetectionBoxes_Precision/mAP"],
                     result["metrics"]["DetectionBoxes_Precision/mAP@.50IOU"])
            last_new = time.time()
        if pending:
            continue  # look again before waiting: more may have appeared meanwhile
        if progress.read_status(checkpoint_dir) is not None:
            break  # the training run has ended and every checkpoint it left is evaluated
        if time.time() - last_new >= eval_timeout:
            log.info("no new checkpoint for %d s: stopping", eval_timeout)
            break
        time.sleep(min(poll_seconds, max(eval_timeout - (time.time() - last_new), 0.1)))
    return progress.read_metrics(model_dir)
