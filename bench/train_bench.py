"""Trainer benchmark: input pipeline vs training throughput, and time to mAP@0.5 on generated shapes.

    .venv/bin/python bench/train_bench.py            # ~10 minutes on 2 CPU cores
    .venv/bin/python bench/train_bench.py --size 128 --steps-per-round 100 --max-rounds 20

Reports (and writes to bench/out/train_bench.json):
- images/s of the tf.data input pipeline alone (read, decode, augment, resize, batch);
- images/s of full training steps (the same pipeline feeding forward + backward + update);
- their ratio: how much headroom the input has over the model (> 1: the model is the bottleneck);
- time and steps until COCO mAP@0.5 on the held-out images reaches the target, evaluated after
  each round of training.
Figures are ratios and times on this machine, not thresholds; the trainer's tests hold the rules.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

import _cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=96, help="image and model input size in pixels")
    parser.add_argument("--train-images", type=int, default=256)
    parser.add_argument("--eval-images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--input-batches", type=int, default=50, help="batches timed for the input alone")
    parser.add_argument("--steps-per-round", type=int, default=150)
    parser.add_argument("--max-rounds", type=int, default=8)
    parser.add_argument("--target-map50", type=float, default=0.5)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import tensorflow as tf

    from backend.config_document import ConfigDocument
    from backend.training.training_config import training_config
    from backend.training.data import train_dataset
    from backend.training.evaluate import evaluate_checkpoint
    from backend.training.train import run_training
    from tests.training.conftest import tiny_config
    from tests.training.shapes import write_dataset, write_label_map

    work = _cli.work_directory("train_bench_")
    try:
        data = work / "data"
        train_glob, _ = write_dataset(data, "train", args.train_images, size=args.size, shards=4, seed=0)
        eval_glob, _ = write_dataset(data, "val", args.eval_images, size=args.size, shards=1, seed=1)
        write_label_map(data)
        config_path = work / "pipeline.config"
        config_path.write_text(tiny_config(data, train_glob, eval_glob, size=args.size, batch_size=args.batch_size,
                                           num_steps=args.steps_per_round * args.max_rounds))
        config = training_config(ConfigDocument.load(config_path))

        # 1. The input pipeline alone.
        dataset = train_dataset(config.train_input, config.resizer, config.augmentations, config.batch_size,
                                config.max_number_of_boxes)
        iterator = iter(dataset)
        for _ in range(5):
            next(iterator)  # warm up: file opening, autotune
        start = time.perf_counter()
        for _ in range(args.input_batches):
            next(iterator)["images"].numpy()
        input_ips = args.input_batches * config.batch_size / (time.perf_counter() - start)
        print(f"input pipeline alone: {input_ips:8.1f} images/s")

        # 2 + 3. Training rounds, evaluated after each, until the target mAP@0.5.
        model_dir = work / "run"
        rounds = []
        train_seconds = 0.0
        reached = None
        for round_index in range(1, args.max_rounds + 1):
            steps = round_index * args.steps_per_round
            t0 = time.perf_counter()
            run_training(config_path, model_dir, num_train_steps=steps, checkpoint_every_n=0)
            train_seconds += time.perf_counter() - t0
            result = evaluate_checkpoint(config_path, tf.train.latest_checkpoint(str(model_dir)))
            map50 = result["metrics"]["DetectionBoxes_Precision/mAP@.50IOU"]
            rounds.append({"step": steps, "train_seconds": round(train_seconds, 1), "map50": round(map50, 4),
                           "map": round(result["metrics"]["DetectionBoxes_Precision/mAP"], 4)})
            print(f"step {steps:5d}  training time {train_seconds:7.1f} s  mAP@0.5 {map50:.3f}")
            if map50 >= args.target_map50:
                reached = rounds[-1]
                break
        from backend.training import progress
        history = progress.read_history(model_dir)
        steady = [row["images_per_sec"] for row in history[1:]] or [history[-1]["images_per_sec"]]
        train_ips = sorted(steady)[len(steady) // 2]
        print(f"full training steps:  {train_ips:8.1f} images/s (median of logged windows)")
        print(f"input / training:     {input_ips / train_ips:8.1f}x")
        if reached:
            print(f"mAP@0.5 >= {args.target_map50}: after {reached['step']} steps, {reached['train_seconds']} s of training")
        else:
            print(f"mAP@0.5 did not reach {args.target_map50} in {rounds[-1]['step']} steps")
        report = {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "devices": history[-1]["devices"], "tensorflow": tf.__version__},
            "settings": vars(args),
            "input_images_per_sec": round(input_ips, 1), "train_images_per_sec": round(train_ips, 1),
            "input_over_train": round(input_ips / train_ips, 2), "rounds": rounds,
            "time_to_target_seconds": reached["train_seconds"] if reached else None,
            "steps_to_target": reached["step"] if reached else None,
        }
        _cli.write_report(_cli.OUT / "train_bench.json", report)
    finally:
        _cli.remove_work_directory(work, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
