"""The trainer and exporter: runs in its own process (`python -m backend train`), never in the app.

Public functions (the CLI calls exactly these):

- `train.run_training(pipeline_config_path, model_dir, *, num_train_steps=None, checkpoint_every_n=1000,
  record_summaries=True, num_workers=1, mixed_precision=False, log_every_n=None, batch_size=None)`
  → final status dict; progress/status files as in `progress.py`
- `evaluate.run_evaluation(pipeline_config_path, model_dir, checkpoint_dir, *, eval_timeout=3600,
  sample_1_of_n=1)` and `evaluate.evaluate_checkpoint(pipeline_config_path, checkpoint_path)`;
  `evaluate.read_metrics(model_dir)` reads `metrics.json`
- `export.export_model(pipeline_config_path, trained_checkpoint_dir, output_directory)`
- `training_config.training_config(doc)` for a `backend.config_document.ConfigDocument` (what it
  refuses: `backend.config_check.check`, the one config check)
- `templates.template_text(name)`, `templates.render_template(name, num_classes=..., train_input=...,
  eval_input=..., label_map_path=..., num_steps=..., batch_size=...)`, `templates.TEMPLATES`

Module map: `boxes` (anchors, box coder, matcher), `losses`, `model` (Keras 3 layers), `config`
(pipeline.config → settings), `data` (tf.data), `detect` (NMS), `train`, `evaluate`, `export`.
"""
