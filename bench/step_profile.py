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
- `cached`   as `nosync`, but every step trains on the same batch held in memory: no input
             pipeline running beside the model
- `jit`      as `nosync`, with the step compiled by XLA (`jit_compile=True`)
- `fusedbn`  as `nosync`, on a second model whose batch norms run TF's fused kernel
             (FusedBatchNormV3, as tf.keras 2 and so the OD API do) instead of Keras 3's
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def fused_batch_norm_step(config, anchors, compute_losses):
    """A second model whose batch norms run TF's fused kernel (FusedBatchNormV3, what tf.keras 2's
    BatchNormalization used and the OD API runs) instead of Keras 3's moments + batch_normalization;
    returns its one-step tf.function. For timing only: the moving variance here is updated with
    the kernel's Bessel-corrected batch variance, as tf.keras 2 did."""
    import keras
    import tensorflow as tf

    import backend.training.network as model_module
    from backend.training.network import build_detector, preprocess_images
    from backend.training.train import build_optimizer

    class FusedBatchNorm(keras.layers.BatchNormalization):
        def call(self, inputs, training=None, mask=None):
            gamma = self.gamma if self.scale else tf.ones_like(self.moving_mean)
            beta = self.beta if self.center else tf.zeros_like(self.moving_mean)
            if training and self.trainable:
                y, mean, var = tf.compat.v1.nn.fused_batch_norm(inputs, gamma, beta, epsilon=self.epsilon,
                                                                is_training=True)
                self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
                self.moving_variance.assign(self.moving_variance * self.momentum + var * (1.0 - self.momentum))
                return y
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(inputs, gamma, beta, mean=self.moving_mean,
                                                       variance=self.moving_variance, epsilon=self.epsilon,
                                                       is_training=False)
            return y

    original = model_module._batch_norm

    def fused(spec, hp, name):
        layer = original(spec, hp, name)
        if isinstance(layer, keras.layers.BatchNormalization):
            return FusedBatchNorm(momentum=layer.momentum, epsilon=layer.epsilon, center=layer.center,
                                  scale=layer.scale, name=name)
        return layer

    model_module._batch_norm = fused
    try:
        model = build_detector(config.model)
    finally:
        model_module._batch_norm = original
    optimizer = build_optimizer(config)
    optimizer.build(model.trainable_variables)
    ssd_losses, regularization_loss = compute_losses

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
    parser.add_argument("--config", default="parity", choices=["parity", "small128"])
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--loop", type=int, default=25, help="steps per call of the `loop` variant")
    parser.add_argument("--variants", default="base,nosync,loop,fusedbn,cached,forward,input")
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
    from backend.config_document import ConfigDocument
    from backend.training.boxes import generate_anchors
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

    def compute(batch):
        outputs = model(preprocess_images(batch["images"]), training=True)
        losses = ssd_losses(anchors, outputs["box_deltas"], outputs["class_logits"], batch["boxes"],
                            batch["classes"], num_classes, config.loss, config.matcher, config.box_scales)
        reg = regularization_loss(model, config.regularization)
        return losses["classification"] + losses["localization"] + reg

    def step(batch):
        with tf.GradientTape() as tape:
            total = compute(batch)
        grads = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return total

    one_step = tf.function(lambda it: step(next(it)))
    fused_step = None
    if "fusedbn" in args.variants:
        fused_step = fused_batch_norm_step(config, anchors, compute_losses=(ssd_losses, regularization_loss))
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

    def run_variant(name: str, n: int) -> tuple[float, float]:
        start, cpu_start = time.perf_counter(), time.process_time()
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
        elif name == "fusedbn":
            for _ in range(n):
                total = fused_step(iterator)
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
