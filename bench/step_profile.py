"""Where the trainer's step time goes: variants of the training step timed in one process, alternating.

    .venv/bin/python bench/step_profile.py --config small128 --batch-size 4 --steps 100 --repeats 2
    .venv/bin/python bench/step_profile.py --variants base,jit --intra 2 --inter 1

Builds the model, optimizer, losses and input exactly as `backend.training.train` does (same
config, same `train_dataset`), then times `--steps` steps per variant after a warm-up, cycling
through the variants `--repeats` times (the machine is shared: compare within a cycle):

- `base`     one step per tf.function call, the losses and step counter read back every step
             (what the loop did before this bench)
- `nosync`   one step per call, nothing read back until the end
- `loop`     `--loop` steps per tf.function call (a `tf.range` loop inside the graph, as
             model_main_tf2's 100 steps per call)
- `untrimmed` as `nosync`, with the ground truth's padding (to `max_number_of_boxes`) kept in the
             matcher (`ssd_losses(..., trim=False)`: the trainer before it trimmed)
- `cached`   as `nosync`, but every step trains on the same batch held in memory: no input
             pipeline running beside the model
- `jit`      as `nosync`, with the step compiled by XLA (`jit_compile=True`; static shapes: the
             ground truth's padding not trimmed)
- `unfusedbn` as `nosync`, on a second model whose batch norms train in Keras 3's ops (moments +
             normalization) instead of TF's fused kernel (FusedBatchNormV3, which the trainer,
             tf.keras 2 and so the OD API use)
- `kerasopt` as `nosync`, on a second model whose optimizer runs Keras 3's element-wise update
             instead of the fused `ResourceApply*` kernel per variable (the trainer's, tf.keras 2's)
- `keras3`   both of the above: the trainer's step before the fused kernels
- `forward`  the forward pass and the losses only (no gradient): how much is the backward pass
- `input`    the input pipeline alone (batches per second, no model)

Each variant's wall and CPU time per step (`time.process_time`: every thread of the process,
the input pipeline's included; less sensitive to other work on the machine than wall time).
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

import _cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def variant_step(config, anchors, fused_batch_norm: bool, fused_optimizer: bool):
    """A second model and optimizer, built as the trainer builds them but with Keras 3's unfused
    batch norm (`fused_batch_norm=False`: moments + normalization in Keras ops, and their
    gradients op by op) and/or Keras 3's element-wise optimizer updates (`fused_optimizer=False`)
    instead of TF's fused kernels; returns its one-step tf.function (same math, for timing)."""
    import tensorflow as tf

    from backend.training.batch_norm import OdApiBatchNormalization
    from backend.training.losses import regularization_loss, ssd_losses
    from backend.training.network import build_detector, preprocess_images
    from backend.training.train import build_optimizer

    model = build_detector(config.model)
    for layer in model._flatten_layers():
        if isinstance(layer, OdApiBatchNormalization):
            layer.fused = fused_batch_norm
    optimizer = build_optimizer(config, fused=fused_optimizer)
    optimizer.build(model.trainable_variables)

    def step(batch):
        with tf.GradientTape() as tape:
            outputs = model(preprocess_images(batch["images"]), training=True)
            losses = ssd_losses(anchors, outputs["box_deltas"], outputs["class_logits"], batch["boxes"],
                                batch["classes"], config.model.num_classes, config.loss, config.matcher,
                                config.box_scales)
            total = losses["classification"] + losses["localization"] + regularization_loss(model, config.regularization)
        grads = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return total

    return tf.function(lambda it: step(next(it)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _cli.add_training_config(parser)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--loop", type=int, default=25, help="steps per call of the `loop` variant")
    parser.add_argument("--variants", default="base,nosync,unfusedbn,kerasopt,keras3,forward")
    _cli.add_threads(parser)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "step_profile.json")
    args = parser.parse_args(argv)

    import tensorflow as tf
    _cli.set_threads(args)

    from parity_bench import write_config
    from backend.config_document import ConfigDocument
    from backend.training.anchors import generate_anchors
    from backend.training.training_config import training_config
    from backend.training.data import train_dataset
    from backend.training.losses import regularization_loss, ssd_losses
    from backend.training.network import build_detector, count_parameters, preprocess_images
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

    def compute(batch, trim=True):
        outputs = model(preprocess_images(batch["images"]), training=True)
        losses = ssd_losses(anchors, outputs["box_deltas"], outputs["class_logits"], batch["boxes"],
                            batch["classes"], num_classes, config.loss, config.matcher, config.box_scales, trim)
        reg = regularization_loss(model, config.regularization)
        return losses["classification"] + losses["localization"] + reg

    def step(batch, trim=True):
        with tf.GradientTape() as tape:
            total = compute(batch, trim)
        grads = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return total

    one_step = tf.function(lambda it: step(next(it)))
    untrimmed_step = tf.function(lambda it: step(next(it), trim=False))
    second = {"unfusedbn": (False, True), "kerasopt": (True, False), "keras3": (False, False)}
    second_steps = {name: variant_step(config, anchors, *fused) for name, fused in second.items()
                    if name in args.variants.split(",")}
    # XLA cannot compile IteratorGetNext (fetch outside) nor the data-dependent padding trim.
    jit_inner = tf.function(lambda batch: step(batch, trim=False), jit_compile=True)
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

    def run_variant(name: str, n: int) -> tuple[float, float]:
        start, cpu_start = time.perf_counter(), time.process_time()
        if name == "base":
            for _ in range(n):
                total = one_step(iterator)
                int(optimizer.iterations.numpy()), float(total.numpy())
        elif name == "nosync":
            for _ in range(n):
                total = one_step(iterator)
        elif name == "untrimmed":
            for _ in range(n):
                total = untrimmed_step(iterator)
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
        elif name in second_steps:
            for _ in range(n):
                total = second_steps[name](iterator)
        elif name == "forward":
            for _ in range(n):
                total = forward(iterator)
        elif name == "input":
            for _ in range(n):
                total = next(iterator)["images"]
        total.numpy()
        return (time.perf_counter() - start) / n, (time.process_time() - cpu_start) / n

    variants = [v for v in args.variants.split(",") if v]
    results: dict[str, list[float]] = {v: [] for v in variants}
    cpu_results: dict[str, list[float]] = {v: [] for v in variants}
    for v in variants:  # warm-up: trace every function
        t0 = time.perf_counter()
        run_variant(v, args.loop if v == "loop" else args.warmup)
        print(f"warm-up {v:8s} {time.perf_counter() - t0:6.1f} s", flush=True)
    loads = []
    for r in range(args.repeats):
        for v in variants:
            seconds, cpu = run_variant(v, args.steps)
            results[v].append(seconds)
            cpu_results[v].append(cpu)
            loads.append(os.getloadavg()[0])
            print(f"repeat {r + 1} {v:8s} {seconds * 1000:7.1f} ms/step  {cpu * 1000:7.1f} CPU ms/step  "
                  f"load {loads[-1]:.2f}", flush=True)
    summary = {v: round(statistics.median(s) * 1000, 1) for v, s in results.items()}
    cpu_summary = {v: round(statistics.median(s) * 1000, 1) for v, s in cpu_results.items()}
    print("\nmedian ms per step:", json.dumps(summary))
    print("median CPU ms per step (all threads of this process):", json.dumps(cpu_summary))
    report = {"settings": {k: str(v) for k, v in vars(args).items()}, "parameters": count_parameters(model),
              "ms_per_step_median": summary, "ms_per_step_all": {v: [round(x * 1000, 1) for x in s] for v, s in results.items()},
              "cpu_ms_per_step_median": cpu_summary,
              "cpu_ms_per_step_all": {v: [round(x * 1000, 1) for x in s] for v, s in cpu_results.items()},
              "load_1min": loads, "tensorflow": tf.__version__,
              "threads": {"intra": tf.config.threading.get_intra_op_parallelism_threads(),
                          "inter": tf.config.threading.get_inter_op_parallelism_threads()}}
    _cli.write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
