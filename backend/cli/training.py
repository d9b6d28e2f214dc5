"""`train` and `export-model`: the TF OD API's model_main_tf2.py and exporter_main_v2.py, same flags.

    python -m backend train --pipeline_config_path=P --model_dir=D [--num_train_steps=N]
    python -m backend train --pipeline_config_path=P --model_dir=D/eval_out --checkpoint_dir=D   # evaluation
    python -m backend export-model --input_type=image_tensor --pipeline_config_path=P \
        --trained_checkpoint_dir=D --output_directory=OUT

TensorFlow is imported only when a command runs, so the rest of the CLI starts fast.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys


def _flag_bool(text: str) -> bool:
    """absl-style booleans: `--record_summaries`, `--record_summaries=false`."""
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "t", "yes", "y"):
        return True
    if lowered in ("0", "false", "f", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="train (or evaluate, with --checkpoint_dir) an SSD from a pipeline.config",
        description="model_main_tf2.py's flags on TensorFlow 2.21 / Keras 3. Training resumes from the "
                    "latest checkpoint in --model_dir; SIGTERM saves a checkpoint and exits 0 with status "
                    "cancelled. With --checkpoint_dir it evaluates that directory's checkpoints instead "
                    "and writes metrics to --model_dir.")
    train.add_argument("--pipeline_config_path", required=True, help="the pipeline.config to train")
    train.add_argument("--model_dir", required=True, help="where checkpoints, events and progress go")
    train.add_argument("--num_train_steps", type=int, default=None, help="overrides train_config.num_steps")
    train.add_argument("--checkpoint_every_n", type=int, default=1000, help="steps between checkpoints")
    train.add_argument("--checkpoint_dir", default=None,
                       help="evaluation mode: evaluate the checkpoints in this directory")
    train.add_argument("--eval_timeout", type=float, default=3600,
                       help="evaluation mode: seconds to wait for a new checkpoint")
    train.add_argument("--sample_1_of_n_eval_examples", type=int, default=1,
                       help="evaluation mode: use every n-th eval example")
    train.add_argument("--sample_1_of_n_eval_on_train_examples", type=int, default=5,
                       help="accepted for compatibility; not used")
    train.add_argument("--num_workers", type=int, default=1,
                       help=">1: MultiWorkerMirroredStrategy over the cluster in TF_CONFIG")
    train.add_argument("--record_summaries", type=_flag_bool, nargs="?", const=True, default=True,
                       help="write TensorBoard events to model_dir/train (default true)")
    train.add_argument("--mixed_precision", type=_flag_bool, nargs="?", const=True, default=False,
                       help="Boxwise: train in mixed_float16 (useful on GPUs with tensor cores)")
    train.add_argument("--use_tpu", type=_flag_bool, nargs="?", const=True, default=False,
                       help="accepted for compatibility; TPUs are not supported")
    train.add_argument("--tpu_name", default=None, help="accepted for compatibility; not used")
    train.add_argument("--alsologtostderr", action="store_true", help="accepted for compatibility")
    train.set_defaults(func=train_command)

    export = subparsers.add_parser(
        "export-model", help="export a checkpoint as a SavedModel with the TF OD API signature",
        description="exporter_main_v2.py's flags. Writes OUT/{saved_model/, checkpoint/, pipeline.config, "
                    "label_map.pbtxt}.")
    export.add_argument("--input_type", default="image_tensor", choices=["image_tensor"])
    export.add_argument("--pipeline_config_path", required=True)
    export.add_argument("--trained_checkpoint_dir", required=True)
    export.add_argument("--output_directory", required=True)
    export.set_defaults(func=export_command)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")


def train_command(args) -> int:
    from backend.errors import Invalid
    if args.use_tpu:
        raise Invalid("--use_tpu: TPUs are not supported; train on GPUs or the CPU")
    _logging()
    if args.checkpoint_dir:
        from backend.training.evaluate import run_evaluation
        metrics = run_evaluation(args.pipeline_config_path, args.model_dir, args.checkpoint_dir,
                                 eval_timeout=args.eval_timeout,
                                 sample_1_of_n=args.sample_1_of_n_eval_examples)
        print(json.dumps(metrics, indent=2, sort_keys=True))
        return 0
    from backend.training.train import run_training
    status = run_training(args.pipeline_config_path, args.model_dir, num_train_steps=args.num_train_steps,
                          checkpoint_every_n=args.checkpoint_every_n, record_summaries=args.record_summaries,
                          num_workers=args.num_workers, mixed_precision=args.mixed_precision,
                          choose_threads=True)
    print(json.dumps(status, sort_keys=True))
    return 0


def export_command(args) -> int:
    _logging()
    from backend.training.savedmodel_export import export_model
    output = export_model(args.pipeline_config_path, args.trained_checkpoint_dir, args.output_directory,
                          input_type=args.input_type)
    print(output)
    return 0
