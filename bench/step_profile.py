"""Where the trainer's step time goes: variants of the training step timed in one process, alternating.

    .venv/bin/python bench/step_profile.py --config small128 --batch-size 4 --steps 100 --repeats 2
    .venv/bin/python bench/step_profile.py --variants base,cached,jit --intra 2 --inter 1

Builds the model, optimizer, losses and input exactly as `backend.training.train` does (same
config, same `train_dataset`), then times `--steps` steps per variant after a warm-up, cycling
through the variants `--repeats` times (the machine is shared: compare within a cycle):

- `base`     one step per tf.function call, the losses and step counter read back every step
             (what the loop did before this bench)
- `nosync`   one step per call, nothing read back until the end
- `loop`     `--loop` steps per tf.function call (a `tf.range` loop inside the graph, as
             model_main_tf2's 100 steps per call)
- `cached`   as `nosync`, but every step trains on the same batch held in memory: no input
             pipeline running beside the model
- `jit`      as `nosync`, with the step compiled by XLA (`jit_compile=True`)
- `forward`  the forward pass and the losses only (no gradient): how much is the backward pass
- `input`    the input pipeline alone (batches per second, no model)

JSON to bench/out/step_profile.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="parity", choices=["parity", "small128"])
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--loop", type=int, default=25, help="steps per call of the `loop` variant")
    parser.add_argument("--variants", default="base,nosync,loop,cached,jit,forward,input")
    parser.add_argument("--intra", type=int, default=0, help="tf.config.threading intra-op threads (0: TF's default)")
    parser.add_argument("--inter", type=int, default=0, help="tf.config.threading inter-op threads (0: TF's default)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "step_profile.json")
    args = parser.parse_args(argv)

    import tensorflow as tf
    if args.intra:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra)
    if args.inter:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter)

    from parity_bench import write_config
    from backend.pipeline_config import ConfigDocument
    from backend.training.boxes import generate_anchors
    from backend.training.config import training_config
    from backend.training.data import train_dataset
    from backend.training.losses import ssd_losses
    from backend.training.model import build_detector, count_parameters, preprocess_images, regularization_loss
    from backend.training.train import build_optimizer

    work = Path(tempfile.mkdtemp(prefix="step_profile_"))
    config = training_config(ConfigDocument.load(write_config(args.config, work / "pipeline.config", args.batch_size)))
    anchors = tf.constant(generate_anchors(config.model.height, config.model.width, config.model.anchors))
    model = build_detector(config.model)
    optimizer = build_optimizer(config)
    optimizer.build(model.trainable_variables)
    dataset = train_dataset(config.train_input, config.resizer, config.augmentations, config.batch_size,
                            config.max_number_of_boxes)
    iterator = iter(dataset)
    num_classes = config.model.num_classes

    def compute(batch):
        outputs = model(preprocess_images(batch["images"]), training=True)
        losses = ssd_losses(anchors, outputs["box_deltas"], outputs["class_logits"], batch["boxes"],
                            batch["classes"], num_classes, config.loss, config.matcher, config.box_scales)
        reg = regularization_loss(model, config.l2_weight)
        return losses["classification"] + losses["localization"] + reg

    def step(batch):
        with tf.GradientTape() as tape:
            total = compute(batch)
        grads = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return total

    one_step = tf.function(lambda it: step(next(it)))
    jit_inner = tf.function(step, jit_compile=True)  # XLA cannot compile IteratorGetNext: fetch outside
    jit_step = lambda it: jit_inner(next(it))  # noqa: E731
    forward = tf.function(lambda it: compute(next(it)))
    fixed = next(iterator)
    cached_step = tf.function(lambda: step(fixed))

    @tf.function
    def loop_step(it):
        total = tf.constant(0.0)
        for _ in tf.range(args.loop):
            total = step(next(it))
        return total

    def run_variant(name: str, n: int) -> float:
        start = time.perf_counter()
        if name == "base":
            for _ in range(n):
                total = one_step(iterator)
                int(optimizer.iterations.numpy()), float(total.numpy())
        elif name == "nosync":
            for _ in range(n):
                total = one_step(iterator)
        elif name == "loop":
            for _ in range(max(1, n // args.loop)):
                total = loop_step(iterator)
            n = max(1, n // args.loop) * args.loop
        elif name == "cached":
            for _ in range(n):
                total = cached_step()
        elif name == "jit":
            for _ in range(n):
                total = jit_step(iterator)
        elif name == "forward":
            for _ in range(n):
                total = forward(iterator)
        elif name == "input":
            for _ in range(n):
                total = next(iterator)["images"]
        total.numpy()
        return (time.perf_counter() - start) / n

    variants = [v for v in args.variants.split(",") if v]
    results: dict[str, list[float]] = {v: [] for v in variants}
    for v in variants:  # warm-up: trace every function
        t0 = time.perf_counter()
        run_variant(v, args.loop if v == "loop" else args.warmup)
        print(f"warm-up {v:8s} {time.perf_counter() - t0:6.1f} s", flush=True)
    loads = []
    for r in range(args.repeats):
        for v in variants:
            seconds = run_variant(v, args.steps)
            results[v].append(seconds)
            loads.append(os.getloadavg()[0])
            print(f"repeat {r + 1} {v:8s} {seconds * 1000:7.1f} ms/step  load {loads[-1]:.2f}", flush=True)
    summary = {v: round(statistics.median(s) * 1000, 1) for v, s in results.items()}
    print("\nmedian ms per step:", json.dumps(summary))
    report = {"settings": {k: str(v) for k, v in vars(args).items()}, "parameters": count_parameters(model),
              "ms_per_step_median": summary, "ms_per_step_all": {v: [round(x * 1000, 1) for x in s] for v, s in results.items()},
              "load_1min": loads, "tensorflow": tf.__version__,
              "threads": {"intra": tf.config.threading.get_intra_op_parallelism_threads(),
                          "inter": tf.config.threading.get_inter_op_parallelism_threads()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
