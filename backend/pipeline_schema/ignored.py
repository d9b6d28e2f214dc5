"""The fields of the schema that Boxwise's trainer parses and accepts but that change nothing
it builds or does, each with the reason. `backend.config_check` lists them as ignored (the
`config check` command, the trainer's log); a field neither here nor in
`config_check.SUPPORTED` is refused with its line.

Paths are `pipeline.config` paths without indices; `*` stands for one path segment.
"""
from __future__ import annotations

_TF1_QUEUES = "a TF 1 input-queue setting; the trainer reads records with tf.data"
_EVAL_IMAGES = "evaluation images for TensorBoard; Boxwise's evaluation writes the COCO metrics only"
_READER_ORDER = ("a tf.data parallelism knob of the OD API's reader; Boxwise's reader (training/data.py) "
                 "leaves parallel batching and prefetch to tf.data (AUTOTUNE): they change speed, not which examples are read")

IGNORED: dict[str, str] = {
    "model.ssd.inplace_batchnorm_update":
        "a TF 1 graph option; Keras batch norm updates its statistics in the training step",
    "model.ssd.matcher.argmax_matcher.use_matmul_gather":
        "a TPU speed option: the matches are the same with or without it",
    "model.ssd.feature_extractor.pad_to_multiple":
        "the trainer never pads the resized image; with a fixed-shape input that is a multiple "
        "of it (the zoo configs say 1) padding changes nothing",
    **{f"model.ssd.{part}.conv_hyperparams.batch_norm.train":
       "TF 1 slim batch norm's is_training switch; the Keras models train batch norm unless "
       "model.ssd.freeze_batchnorm is set, as in the OD API's TF 2 models"
       for part in ("feature_extractor", "box_predictor.weight_shared_convolutional_box_predictor")},
    "model.ssd.image_resizer.keep_aspect_ratio_resizer.pad_to_max_dimension":
        "the trainer always pads the resized image to max_dimension × max_dimension, so images of "
        "any shape can share a batch (false would give every image its own input size)",
    "train_config.optimizer.moving_average_decay":
        "no moving average of the weights is kept (use_moving_average must be false)",
    "eval_config.max_evals":
        "the OD API's continuous evaluator's loop count; Boxwise evaluates the checkpoints it is asked to",
    "train_config.sync_replicas": "TF 1 distributed training (SyncReplicasOptimizer)",
    "train_config.replicas_to_aggregate": "TF 1 distributed training (SyncReplicasOptimizer)",
    "train_config.startup_delay_steps": "TF 1 distributed training (worker start-up delay)",
    "train_config.use_bfloat16": "TPU only",
    "train_config.fine_tune_checkpoint_version":
        "TF 1 name-based checkpoints; TF 2 checkpoints are restored by object",
    "train_config.unpad_groundtruth_tensors": "TPU static shapes; the trainer masks padded boxes",
    "train_config.from_detection_checkpoint":
        "deprecated in the OD API; fine_tune_checkpoint_type says what is restored",
    "train_config.load_all_detection_checkpoint_vars":
        "a TF 1 restore option; fine_tune_checkpoint_type says what is restored",
    "train_config.keep_checkpoint_every_n_hours": "not read by the OD API's TF 2 training loop either",
    "train_config.summarize_gradients": "TF 1 gradient summaries",
    "train_config.batch_queue_capacity": _TF1_QUEUES,
    "train_config.num_batch_queue_threads": _TF1_QUEUES,
    "train_config.prefetch_queue_capacity": _TF1_QUEUES,
    "train_config.retain_original_images": "unresized images kept for image summaries, which Boxwise does not write",
    "train_config.use_multiclass_scores":
        "reads image/class/multiclass_scores from the records, which Boxwise's records do not carry",
    "eval_config.num_visualizations": _EVAL_IMAGES,
    "eval_config.visualization_export_dir": _EVAL_IMAGES,
    "eval_config.max_num_boxes_to_visualize": _EVAL_IMAGES,
    "eval_config.min_score_threshold": _EVAL_IMAGES,
    "eval_config.visualize_groundtruth_boxes": _EVAL_IMAGES,
    "eval_config.retain_original_images": _EVAL_IMAGES,
    "eval_config.keep_image_id_for_visualization_export": _EVAL_IMAGES,
    "eval_config.skip_scores": _EVAL_IMAGES,
    "eval_config.skip_labels": _EVAL_IMAGES,
    "eval_config.eval_interval_secs":
        "the OD API's TF 1 continuous-evaluation interval; Boxwise's evaluation does not read it",
    **{f"{reader}.{name}": reason for reader in ("train_input_reader", "eval_input_reader")
       for name, reason in (
           ("queue_capacity", _TF1_QUEUES), ("min_after_dequeue", _TF1_QUEUES),
           ("load_instance_masks", "instance masks: the SSD has no mask head"),
           ("num_parallel_batches", _READER_ORDER), ("num_prefetch_batches", _READER_ORDER),
           ("max_number_of_boxes", "the trainer pads each image's boxes to train_config.max_number_of_boxes"))},
}
