"""The trainer and exporter: runs in its own process (`python -m backend train`), never in the app.

What the commands call (`backend/cli/training.py`, `backend/cli/tflite.py`):

- `python -m backend train`: `train.run_training(pipeline_config_path, model_dir, *, num_train_steps=None,
  checkpoint_every_n=1000, record_summaries=True, num_workers=1, mixed_precision=False,
  log_every_n=None, batch_size=None)` → final status dict; progress/status files as in `progress.py`
- `python -m backend train --checkpoint_dir DIR`: `evaluate.run_evaluation(pipeline_config_path,
  model_dir, checkpoint_dir, *, eval_timeout=3600, sample_1_of_n=1)`; one checkpoint alone is
  `evaluate.evaluate_checkpoint(pipeline_config_path, checkpoint_path)`; the `metrics.json` it
  keeps is read with `progress.read_metrics(model_dir)`
- `python -m backend export-model`: `savedmodel_export.export_model(pipeline_config_path,
  trained_checkpoint_dir, output_directory)`
- `python -m backend export-tflite`: `tflite_export.export_tflite(pipeline_config_path,
  trained_checkpoint_dir, output_directory)`

Each of them reads its config through `training_config.training_config(doc)` (what it refuses:
`backend.config_check.check`, the one config check). The templates are
`templates.template_text(name)`, `templates.render_template(name, num_classes=..., train_input=...,
eval_input=..., label_map_path=..., num_steps=..., batch_size=...)` and `templates.TEMPLATES`.

Module map: `training_config` (pipeline.config → typed settings), `anchors` (the multiscale
anchor generator, numpy), `anchor_matching` (IoU, box coder, matcher), `network` (the Keras 3
detector), `batch_norm` (batch norm as the OD API trains it), `losses` (targets and losses),
`schedules` (learning rates in plain Python), `data` (tf.data input and augmentation), `train`
(the loop), `restore` (checkpoints in the OD API's layout), `progress` (progress and status
files), `evaluate` (COCO metrics per checkpoint), `detect` (post-processing, NMS), `fold`
(batch norm folded for export), `savedmodel_export`, `tflite_export`, `templates/`.
"""
