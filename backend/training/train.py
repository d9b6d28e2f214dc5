"""The training loop: `run_training(pipeline_config_path, model_dir, ...)`, what `python -m backend train` runs.

What it leaves in `model_dir` (the TF OD API's layout plus Boxwise's progress files):

- `pipeline.config`          the config trained with (comments kept; `num_steps` set to the run's)
- `checkpoint`, `ckpt-N.*`   `tf.train.CheckpointManager` checkpoints, N = the checkpoint counter;
                             saved every `checkpoint_every_n` steps, at the end and on SIGTERM; the
                             model under the TF OD API's keys, the optimizer as `optimizer/_iterations`
                             and `optimizer/_variables/N` (`restore.py`)
- `restore_report.json`      one entry per start: what was restored, what starts fresh and why
                             (`restore.RestoreReport`)
- `train/events.out.tfevents.*`  TensorBoard: `Loss/classification_loss`, `Loss/localization_loss`,
                             `Loss/regularization_loss`, `Loss/total_loss`, `learning_rate`, `steps_per_sec`
- `progress.json`, `progress.jsonl`, `status.json`  see `backend/training/progress.py`

Re-running with the same `model_dir` resumes from the latest checkpoint (every model and optimizer
variable must match). A fine-tune checkpoint that does not match the whole backbone stops the run
before step 1. SIGTERM saves a
checkpoint, writes status `cancelled` and returns normally (exit code 0).
"""
from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import keras
import tensorflow as tf

from backend import atomic, config_check
from backend.auth import CLI_ACTOR
from backend.errors import Invalid
from backend.config_document import ConfigDocument
from backend.training import progress, restore
from backend.training.schedules import LEARNING_RATE_DEFAULTS, manual_steps
from backend.training.anchors import generate_anchors
from backend.training.training_config import (TrainingConfig, check_fine_tune_checkpoint,
                                     training_config)
from backend.training.data import train_dataset
from backend.training.losses import regularization_loss, ssd_losses
from backend.training.network import SSDDetector, build_detector, preprocess_images

log = logging.getLogger(__name__)

MAX_CHECKPOINTS = 5


class NaNLoss(Invalid):
    pass


# --- learning rate ---------------------------------------------------------------------------

class PipelineLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """The TF OD API's learning-rate schedules (`utils/learning_schedules.py`), evaluated at the
    optimizer's step (0 on the first update, as the OD API's `global_step`).

    Missing fields take the `optimizer.proto` defaults (`LEARNING_RATE_DEFAULTS`).

    - constant: `learning_rate`.
    - exponential (`exponential_decay_learning_rate`): `initial · decay_factor^((step − burnin_steps)
      / decay_steps)` (exponent floored when `staircase`); `burnin_learning_rate` (or `initial`
      when it is 0) while `step < burnin_steps`; never below `min_learning_rate`.
    - manual_step: `initial_learning_rate` until the first `schedule` step, then each step's rate
      from its step on; with `warmup`, a straight line from the initial rate (step 0) towards the
      first scheduled rate, reached at the first scheduled step.
    - cosine (`cosine_decay_learning_rate`): `0.5 · base · (1 + cos(π · (step − warmup − hold) /
      (total − warmup − hold)))`; `base` while `step ≤ warmup + hold` when hold > 0; a line from
      `warmup_learning_rate` at step 0 (slope `(base − warmup_lr) / warmup`) while
      `step < warmup`; 0 after `total_steps`.
    """

    def __init__(self, kind: str, params: dict[str, Any]):
        if kind not in LEARNING_RATE_DEFAULTS:
            raise Invalid(f"unknown learning-rate schedule {kind!r}")
        self.kind = kind
        self.params = dict(params)

    def _get(self, name: str):
        return self.params.get(name, LEARNING_RATE_DEFAULTS[self.kind][name])

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        if self.kind == "constant":
            return tf.constant(float(self._get("learning_rate")), tf.float32)
        if self.kind == "exponential":
            initial = float(self._get("initial_learning_rate"))
            burnin_steps = int(self._get("burnin_steps"))
            burnin = float(self._get("burnin_learning_rate")) or initial
            exponent = (step - burnin_steps) / float(self._get("decay_steps"))
            if self._get("staircase"):
                exponent = tf.floor(exponent)
            decayed = initial * tf.pow(float(self._get("decay_factor")), exponent)
            lr = tf.where(step < burnin_steps, burnin, decayed)
            return tf.maximum(lr, float(self._get("min_learning_rate")))
        if self.kind == "manual_step":
            initial = float(self._get("initial_learning_rate"))
            boundaries, after = manual_steps(list(self._get("schedule")))
            rates = [initial] + after
            lr = tf.constant(rates[0], tf.float32)
            for boundary, rate in zip(boundaries, rates[1:]):
                lr = tf.where(step >= boundary, rate, lr)
            if self._get("warmup") and boundaries:
                warm = initial + (rates[1] - initial) / boundaries[0] * tf.floor(step)
                lr = tf.where(step < boundaries[0], warm, lr)
            return lr
        base = float(self._get("learning_rate_base"))
        total = int(self._get("total_steps"))
        warmup_lr = float(self._get("warmup_learning_rate"))
        warmup = int(self._get("warmup_steps"))
        hold = int(self._get("hold_base_rate_steps"))
        lr = 0.5 * base * (1.0 + tf.cos(math.pi * (step - warmup - hold) / float(total - warmup - hold)))
        if hold > 0:
            lr = tf.where(step > warmup + hold, lr, base)
        if warmup > 0:
            lr = tf.where(step < warmup, (base - warmup_lr) / warmup * step + warmup_lr, lr)
        return tf.where(step > total, 0.0, lr)

    def get_config(self):
        return {"kind": self.kind, "params": self.params}




class InverseTimeDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule(step) / (1 + decay · step)`: what the Keras 2 optimizers the TF OD API's TF 2
    trainer was written for do with their `decay` argument (the OD API passes `rms_prop_optimizer
    .decay` there)."""

    def __init__(self, schedule: keras.optimizers.schedules.LearningRateSchedule, decay: float):
        self.schedule = schedule
        self.decay = float(decay)

    def __call__(self, step):
        return self.schedule(step) / (1.0 + self.decay * tf.cast(step, tf.float32))

    def get_config(self):
        return {"schedule": self.schedule.get_config(), "decay": self.decay}


def _fusable(gradient, variable) -> bool:
    """A dense gradient of a float variable: what TF's fused `ResourceApply*` kernels update in one op."""
    return not isinstance(gradient, tf.IndexedSlices) and variable.dtype.is_floating


def _handle(variable):
    """The resource handle of a Keras (or tf) variable, the device's own under a distribution strategy."""
    if isinstance(variable, keras.Variable):
        variable = variable.value  # the tf.Variable (tf.Variable.value is a method: not this)
    return variable.handle


class OdApiAdam(keras.optimizers.Adam):
    """Keras 3's Adam updating each variable with TensorFlow's fused `ResourceApplyAdam` kernel, as
    Keras 2's Adam (which the TF OD API builds) did: one op per variable instead of about ten.

    Same slots (`m`, `v`), same math: `alpha = lr·sqrt(1 − beta2^t) / (1 − beta1^t)` with `t` the
    optimizer's step + 1, `m += (g − m)(1 − beta1)`, `v += (g² − v)(1 − beta2)`,
    `w −= alpha·m / (sqrt(v) + epsilon)`. `fused=False` (and amsgrad, sparse gradients) runs Keras'
    own element-wise update.
    """

    def __init__(self, *args, fused: bool = True, name: str = "adam", **kwargs):
        super().__init__(*args, name=name, **kwargs)
        self.fused = bool(fused)
        self._step_scalars: dict | None = None

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # The step's scalars (beta powers, learning rate) once per device and dtype for all the
        # variables, as Keras 2's `_prepare_local` did, not five ops per variable.
        self._step_scalars = {}
        try:
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._step_scalars = None

    def _scalars(self, variable, learning_rate) -> dict:
        dtype = variable.dtype
        key = (variable.device, dtype)
        cache = self._step_scalars if self._step_scalars is not None else {}
        if key not in cache:
            step = tf.cast(self.iterations + 1, dtype)
            beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
            cache[key] = {"beta1_power": tf.pow(beta_1, step), "beta2_power": tf.pow(beta_2, step),
                          "lr": tf.cast(learning_rate, dtype), "beta1": beta_1, "beta2": beta_2,
                          "epsilon": tf.cast(self.epsilon, dtype)}
        return cache[key]

    def update_step(self, gradient, variable, learning_rate):
        if not (self.fused and not self.amsgrad and _fusable(gradient, variable)):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]), v=_handle(self._velocities[index]),
            grad=tf.cast(gradient, variable.dtype), use_locking=False, use_nesterov=False,
            **self._scalars(variable, learning_rate))


class OdApiSGD(keras.optimizers.SGD):
    """Keras 3's SGD updating each variable with TensorFlow's fused kernels, as Keras 2's SGD did:
    `ResourceApplyKerasMomentum` (`m ← momentum·m − lr·g; w ← w + m`, Keras' momentum slot) or,
    without momentum, `ResourceApplyGradientDescent`. `fused=False` (and nesterov, sparse
    gradients) runs Keras' own update."""

    def __init__(self, *args, fused: bool = True, name: str = "SGD", **kwargs):
        super().__init__(*args, name=name, **kwargs)
        self.fused = bool(fused)

    def update_step(self, gradient, variable, learning_rate):
        if not (self.fused and not self.nesterov and _fusable(gradient, variable)):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        lr, gradient = tf.cast(learning_rate, dtype), tf.cast(gradient, dtype)
        if self.momentum == 0:
            tf.raw_ops.ResourceApplyGradientDescent(var=_handle(variable), alpha=lr, delta=gradient)
            return
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=_handle(variable), accum=_handle(self.momentums[self._get_variable_index(variable)]), lr=lr,
            grad=gradient, momentum=tf.cast(self.momentum, dtype), use_locking=False, use_nesterov=False)


class OdApiRMSprop(keras.optimizers.Optimizer):
    """RMSprop with momentum as TensorFlow's `ApplyRMSProp` kernel (Keras 2's RMSprop, which the TF
    OD API builds) computes it, which Keras 3's RMSprop does not: epsilon inside the square root.

    `ms ← rho·ms + (1 − rho)·g²; mom ← momentum·mom + lr·g / sqrt(ms + epsilon); w ← w − mom`,
    slots starting at 0, rho 0.9 (the OD API leaves Keras' default). The update runs that kernel
    (`ResourceApplyRMSProp`, one op per variable); `fused=False` runs the same formula op by op.
    """

    def __init__(self, learning_rate, rho: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-7,
                 name: str = "rmsprop", fused: bool = True, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.fused = bool(fused)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._ms = [self.add_variable_from_reference(v, "rms") for v in variables]
        self._mom = [self.add_variable_from_reference(v, "momentum") for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        lr = tf.cast(learning_rate, variable.dtype)
        gradient = tf.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        ms, mom = self._ms[index], self._mom[index]
        if self.fused and _fusable(gradient, variable):
            dtype = variable.dtype
            tf.raw_ops.ResourceApplyRMSProp(
                var=_handle(variable), ms=_handle(ms), mom=_handle(mom), lr=lr, rho=tf.cast(self.rho, dtype),
                momentum=tf.cast(self.momentum, dtype), epsilon=tf.cast(self.epsilon, dtype), grad=gradient,
                use_locking=False)
            return
        self.assign(ms, self.rho * ms + (1.0 - self.rho) * tf.square(gradient))
        self.assign(mom, self.momentum * mom + lr * gradient / tf.sqrt(ms + self.epsilon))
        self.assign_sub(variable, mom)

    def get_config(self):
        config = super().get_config()
        config.update({"rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon})
        return config


def build_optimizer(config: TrainingConfig, mixed_precision: bool = False,
                    fused: bool = True) -> keras.optimizers.Optimizer:
    """The TF OD API's `optimizer_builder.build_optimizers_tf_v2`, in Keras 3 terms.

    - momentum_optimizer: `OdApiSGD` with momentum `momentum_optimizer_value` (default 0.9);
    - adam_optimizer: `OdApiAdam` with `epsilon` (default 1e-8) and Keras' betas 0.9, 0.999;
    - rms_prop_optimizer: `OdApiRMSprop` with momentum (default 0.9), epsilon (default 1.0), and
      `decay` (default 0.9) as the learning rate's inverse-time decay (`InverseTimeDecay`).

    `train_config.gradient_clipping_by_norm` clips by the global norm of all gradients
    (`tf.clip_by_global_norm` in `model_lib_v2`), i.e. Keras' `global_clipnorm`.

    Each optimizer updates a variable with TF's fused kernel for it, as Keras 2's did (`fused`;
    False: Keras 3's element-wise updates of the same slots, kept for comparison and tests).
    """
    opt = config.optimizer
    schedule = PipelineLearningRate(opt.learning_rate.kind, opt.learning_rate.params)
    common = {}
    if opt.clipnorm:
        common["global_clipnorm"] = opt.clipnorm
    if opt.kind == "momentum":
        optimizer = OdApiSGD(learning_rate=schedule, momentum=opt.momentum, fused=fused, **common)
    elif opt.kind == "adam":
        optimizer = OdApiAdam(learning_rate=schedule, epsilon=opt.epsilon, fused=fused, **common)
    elif opt.kind == "rms_prop":
        rate = InverseTimeDecay(schedule, opt.decay) if opt.decay else schedule
        optimizer = OdApiRMSprop(rate, momentum=opt.momentum, epsilon=opt.epsilon, fused=fused, **common)
    else:
        raise Invalid(f"unknown optimizer {opt.kind!r}")
    if mixed_precision:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


# --- the loss of a step ------------------------------------------------------------------------

def step_losses(model: SSDDetector, config: TrainingConfig, anchors, images, boxes, classes,
                training: bool = True) -> dict[str, Any]:
    """What `model_lib_v2` differentiates for one (replica's) batch: images `[B, H, W, 3]` in
    [0, 255] and padded ground truth → `losses_for_outputs`, batch norm on batch statistics
    (`training`) as `eager_train_step` runs it."""
    outputs = model(preprocess_images(images), training=training)
    return losses_for_outputs(model, config, anchors, outputs, boxes, classes)


def losses_for_outputs(model: SSDDetector, config: TrainingConfig, anchors, outputs, boxes,
                       classes) -> dict[str, Any]:
    """`{"classification", "localization", "regularization", "total"}` (the OD API's
    `Loss/classification_loss` … `Loss/total_loss`) for the model's outputs on a batch."""
    losses = ssd_losses(anchors, outputs["box_deltas"], outputs["class_logits"], boxes, classes,
                        config.model.num_classes, config.loss, config.matcher, config.box_scales)
    reg = regularization_loss(model, config.regularization)
    return {"classification": losses["classification"], "localization": losses["localization"],
            "regularization": reg, "total": losses["classification"] + losses["localization"] + reg}


# --- devices and strategy --------------------------------------------------------------------

def device_names() -> list[str]:
    gpus = tf.config.list_physical_devices("GPU")
    names = []
    for gpu in gpus:
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
        except Exception:  # noqa: BLE001 - details are cosmetic
            names.append(gpu.name)
    return names or ["CPU"]


# Thread counts for a CPU-only step. TensorFlow's default runs each op over every core (intra-op)
# and as many ops side by side as there are cores (inter-op). On 2 cores with the small ops of a
# step at 128 px, batch 8 (BENCHMARKS.md, "Threads"), one thread per op with 2 ops side by side
# took 5-13 % less wall time and 20-25 % less CPU than that default; at 192 px it was within the
# noise (-6 / +8 %), at 256 and 320 px 15 % slower (the convolutions are then large enough to
# split). So the trainer chooses it only there: 2 logical CPUs, no GPU, at most SMALL_STEP_PIXELS
# input pixels per replica and step, and neither thread count set in the environment (which
# TensorFlow then reads; the dashboard sets both for the runs it launches). Not measured on more
# cores, where TensorFlow's default stays.
SMALL_STEP_PIXELS = 160 * 160 * 8
THREAD_ENV = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def chosen_op_threads(height: int, width: int, per_replica_batch: int, cpus: int, gpus: int,
                      environ) -> tuple[int, int] | None:
    """`(intra-op, inter-op)` threads the trainer sets for this step, or None to keep what
    TensorFlow would use (its default, or the environment's `TF_NUM_*_THREADS`)."""
    if gpus or cpus != 2 or any(name in environ for name in THREAD_ENV):
        return None
    if height * width * per_replica_batch > SMALL_STEP_PIXELS:
        return None
    return 1, cpus


def set_op_threads(height: int, width: int, per_replica_batch: int) -> str:
    """Apply `chosen_op_threads` for this machine before TensorFlow starts; what was done, for the log."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    gpus = len(tf.config.list_physical_devices("GPU"))
    choice = chosen_op_threads(height, width, per_replica_batch, cpus, gpus, os.environ)
    if choice is None:
        set_in_env = [f"{name}={os.environ[name]}" for name in THREAD_ENV if name in os.environ]
        return "threads: " + (", ".join(set_in_env) + " from the environment" if set_in_env
                              else f"TensorFlow's default ({cpus} CPUs, {gpus} GPUs)")
    intra, inter = choice
    pools = tf.config.threading
    try:  # setting a count to the value it has is a no-op, even after TensorFlow started
        pools.set_intra_op_parallelism_threads(intra)
        pools.set_inter_op_parallelism_threads(inter)
    except RuntimeError:  # TensorFlow already ran an op in this process (a test, a notebook)
        return "threads: kept (TensorFlow had already started in this process)"
    return (f"threads: {intra} per op, {inter} ops side by side ({cpus} CPUs, {height}x{width} input, "
            f"batch {per_replica_batch} per replica; set TF_NUM_INTRAOP_THREADS / "
            f"TF_NUM_INTEROP_THREADS to choose); in effect: {pools.get_intra_op_parallelism_threads()} "
            f"intra-op, {pools.get_inter_op_parallelism_threads()} inter-op")


# Split the CPU into this many logical devices and mirror over them when there is no GPU: the
# multi-replica path (per-replica batches, all-reduced gradients, mirrored checkpoints) runs on
# a CPU-only machine, which is how the tests exercise it. No speed gain: the cores are shared.
CPU_REPLICAS_ENV = "BOXWISE_CPU_REPLICAS"


def make_strategy(num_workers: int = 1) -> tf.distribute.Strategy:
    """All local GPUs (or the CPU) through MirroredStrategy; several machines through
    MultiWorkerMirroredStrategy, which reads the cluster from `TF_CONFIG`."""
    if num_workers > 1:
        if not os.environ.get("TF_CONFIG"):
            raise Invalid(f"--num_workers {num_workers} needs TF_CONFIG describing the cluster "
                          "(see tf.distribute.MultiWorkerMirroredStrategy)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    cpu_replicas = int(os.environ.get(CPU_REPLICAS_ENV) or 1)
    if not gpus and cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
        except RuntimeError:
            raise Invalid(f"{CPU_REPLICAS_ENV} must be set before TensorFlow starts (set it in the "
                          "environment of the training process)") from None
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(cpu_replicas)])
    # One device: the default strategy has no cross-device overhead.
    return tf.distribute.get_strategy()


# --- TensorBoard ---------------------------------------------------------------------------

def write_scalars(writer, step: int, values: dict[str, float]) -> None:
    """Scalar summaries TensorBoard shows, written with `tf.summary.write` and the scalars plugin's
    metadata, so the `tensorboard` package is needed only to view them, not to train."""
    from tensorflow.core.framework import summary_pb2
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars", content=b""))
    with writer.as_default(step=step):
        for tag, value in values.items():
            tf.summary.write(tag, tf.constant(float(value), tf.float32), metadata=metadata)
    writer.flush()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a non-chief worker of a MultiWorkerMirroredStrategy cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


# --- checkpoints -----------------------------------------------------------------------------

def checkpoint_for(model: SSDDetector, optimizer: keras.optimizers.Optimizer | None = None) -> tf.train.Checkpoint:
    """The checkpoint: `model`'s variables under the TF OD API's keys (`restore.checkpoint_for`)
    and, for training, `optimizer` (its slots and iteration count)."""
    return restore.checkpoint_for(model, optimizer)


# --- the loop --------------------------------------------------------------------------------

class _StopFlag:
    """Set by SIGTERM; the loop checks it between steps and stops cleanly."""

    def __init__(self):
        self.requested = False
        self.signal_name = ""

    def install(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGTERM)

        def handler(signum, frame):
            self.requested = True
            self.signal_name = signal.Signals(signum).name

        signal.signal(signal.SIGTERM, handler)
        return lambda: signal.signal(signal.SIGTERM, previous)


def _write_config_copy(doc: ConfigDocument, model_dir: Path, num_steps: int) -> None:
    copy = ConfigDocument(doc.text)
    try:
        if copy.get("train_config.num_steps") != num_steps:
            copy.set("train_config.num_steps", num_steps)
    except Exception:  # noqa: BLE001 - absent: leave the copy as written
        copy.set("train_config.num_steps", num_steps)
    atomic.write_text(model_dir / "pipeline.config", copy.text)


def run_training(pipeline_config_path: str | os.PathLike, model_dir: str | os.PathLike, *,
                 num_train_steps: int | None = None, checkpoint_every_n: int = 1000,
                 record_summaries: bool = True, num_workers: int = 1, mixed_precision: bool = False,
                 log_every_n: int | None = None, batch_size: int | None = None,
                 choose_threads: bool = False) -> dict[str, Any]:
    """Train (or resume) a detector; returns the final status dict (also written to `status.json`).

    `choose_threads`: set TensorFlow's thread counts with `set_op_threads` first (`python -m
    backend train` does; a call from a process with other TensorFlow work leaves them alone).

    Raises `Invalid`/`NotFound` for configs and inputs that cannot train (after writing status
    `failed` with the message). SIGTERM ends the run with status `cancelled` after a checkpoint.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / progress.STATUS_FILE).unlink(missing_ok=True)
    stop = _StopFlag()
    restore_signal = stop.install()
    state: dict[str, Any] = {"step": 0, "checkpoint": None}
    try:
        result = _train(Path(pipeline_config_path), model_dir, stop, state, num_train_steps=num_train_steps,
                        checkpoint_every_n=checkpoint_every_n, record_summaries=record_summaries,
                        num_workers=num_workers, mixed_precision=mixed_precision, log_every_n=log_every_n,
                        batch_size=batch_size, choose_threads=choose_threads)
    except BaseException as exc:
        message = str(exc) or type(exc).__name__
        if isinstance(exc, KeyboardInterrupt):
            progress.write_status(model_dir, "cancelled", error="interrupted", step=state["step"],
                                  checkpoint=state["checkpoint"])
        else:
            progress.write_status(model_dir, "failed", error=message, step=state["step"],
                                  checkpoint=state["checkpoint"])
        raise
    finally:
        restore_signal()
    return result


def _train(config_path: Path, model_dir: Path, stop: _StopFlag, state: dict[str, Any], *, num_train_steps,
           checkpoint_every_n, record_summaries, num_workers, mixed_precision, log_every_n,
           batch_size, choose_threads) -> dict[str, Any]:
    started_at = time.time()
    doc = ConfigDocument.load(config_path)
    problems = config_check.check(doc.text, actor=CLI_ACTOR)  # what the Configs page and `config check` say
    if problems:
        raise Invalid(f"the config cannot be trained in {config_path}:\n" + "\n".join(f"- {p}" for p in problems))
    config = training_config(doc)
    for path, line, reason in config.ignored:
        log.warning("ignored: %s (line %d): %s", path, line, reason)
    if choose_threads:  # with a GPU set_op_threads keeps TensorFlow's choice: CPU replicas only here
        cpu_replicas = int(os.environ.get(CPU_REPLICAS_ENV) or 1)
        per_replica_batch = max(1, (batch_size or config.batch_size) // (cpu_replicas * max(1, num_workers)))
        log.info("%s", set_op_threads(config.model.height, config.model.width, per_replica_batch))
    check_fine_tune_checkpoint(config, doc)
    total_steps = int(num_train_steps or config.num_steps)
    if total_steps <= 0:
        raise Invalid("no number of steps: set train_config.num_steps or pass --num_train_steps")
    if batch_size:
        config = replace(config, batch_size=batch_size)
    _write_config_copy(doc, model_dir, total_steps)

    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = make_strategy(num_workers)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise Invalid(f"train_config.batch_size {config.batch_size} does not split evenly over {replicas} replicas")
    per_replica = config.batch_size // replicas
    anchors = tf.constant(generate_anchors(config.model.height, config.model.width, config.model.anchors))

    with strategy.scope():
        model = build_detector(config.model)
        optimizer = build_optimizer(config, mixed_precision)
        optimizer.build(model.trainable_variables)
    checkpoint = checkpoint_for(model, optimizer)
    # Every worker takes part in saving (it is collective) but only the chief writes to model_dir.
    out_dir = model_dir if is_chief(strategy) else model_dir / f"worker-{strategy.cluster_resolver.task_id}"
    manager = tf.train.CheckpointManager(checkpoint, str(out_dir), max_to_keep=MAX_CHECKPOINTS)
    latest = tf.train.latest_checkpoint(str(model_dir))
    # What this start restores, checked before step 1 and stored with the run (restore_report.json).
    if latest:
        report = restore.resume(model, optimizer, latest, root=checkpoint)
        state["checkpoint"] = latest
        state["saved_step"] = int(optimizer.iterations.numpy())
    else:
        report = restore.fine_tune(model, config.fine_tune_checkpoint, config.fine_tune_checkpoint_type)
    log.info("%s", report.summary())
    if is_chief(strategy):
        restore.write_report(model_dir, report, int(optimizer.iterations.numpy()))
    if latest:
        log.info("resumed from %s at step %d", latest, int(optimizer.iterations.numpy()))

    def dataset_fn(input_context):
        return train_dataset(config.train_input, config.resizer, config.augmentations, per_replica,
                             config.max_number_of_boxes, input_context)

    dataset = strategy.distribute_datasets_from_function(dataset_fn)
    inner_optimizer = getattr(optimizer, "inner_optimizer", optimizer)

    def replica_step(batch):
        with tf.GradientTape() as tape:
            losses = step_losses(model, config, anchors, batch["images"], batch["boxes"], batch["classes"])
            scaled = losses["total"] / replicas
            if mixed_precision:
                scaled = optimizer.scale_loss(scaled)
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return losses

    @tf.function
    def train_step(iterator):
        per_replica_losses = strategy.run(replica_step, args=(next(iterator),))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica_losses.items()}

    writer = tf.summary.create_file_writer(str(out_dir / "train")) if record_summaries else None
    devices = device_names()
    log_every = log_every_n or max(1, min(100, total_steps // 20))
    step = int(optimizer.iterations.numpy())
    state["step"] = step
    iterator = iter(dataset)
    window_start, window_steps = time.time(), 0
    last_losses: dict[str, float] = {}
    log.info("training %d steps (from step %d) on %s, batch %d%s", total_steps, step, ", ".join(devices),
             config.batch_size, f" over {replicas} replicas ({per_replica} each)" if replicas > 1 else "")

    def save(reason: str) -> str:
        path = manager.save()
        state["checkpoint"] = path
        state["saved_step"] = step
        log.info("checkpoint %s at step %d (%s)", path, step, reason)
        return path

    while step < total_steps:
        if stop.requested:
            save(f"stopped by {stop.signal_name}")
            progress.write_status(out_dir, "cancelled", step=step, checkpoint=state["checkpoint"])
            return progress.read_status(out_dir)
        losses = train_step(iterator)
        step = int(optimizer.iterations.numpy())
        state["step"] = step
        window_steps += 1
        total_value = float(losses["total"].numpy())
        if not math.isfinite(total_value):
            parts = ", ".join(f"{k} {float(v.numpy())}" for k, v in losses.items())
            raise NaNLoss(f"the loss became {total_value} at step {step} ({parts}); lower the learning rate "
                          "or check the boxes in the input records. The last checkpoint is kept.")
        first_of_process = window_steps == 1 and not last_losses
        if step % log_every == 0 or step == total_steps or stop.requested or first_of_process:
            elapsed = max(time.time() - window_start, 1e-9)
            steps_per_sec = window_steps / elapsed
            last_losses = {k: float(v.numpy()) for k, v in losses.items()}
            lr = float(inner_optimizer.learning_rate.numpy()) if hasattr(inner_optimizer.learning_rate, "numpy") \
                else float(PipelineLearningRate(config.optimizer.learning_rate.kind,
                                                config.optimizer.learning_rate.params)(step))
            if writer is not None:
                write_scalars(writer, step, {
                    "Loss/classification_loss": last_losses["classification"],
                    "Loss/localization_loss": last_losses["localization"],
                    "Loss/regularization_loss": last_losses["regularization"],
                    "Loss/total_loss": last_losses["total"],
                    "learning_rate": lr, "steps_per_sec": steps_per_sec})
            progress.write_progress(out_dir, {
                "step": step, "total_steps": total_steps, "losses": last_losses, "learning_rate": lr,
                "steps_per_sec": steps_per_sec, "images_per_sec": steps_per_sec * config.batch_size,
                "started_at": started_at, "devices": devices, "phase": "train"})
            log.info("step %d/%d loss %.4f (cls %.4f loc %.4f reg %.4f) lr %.5f %.2f steps/s", step, total_steps,
                     last_losses["total"], last_losses["classification"], last_losses["localization"],
                     last_losses["regularization"], lr, steps_per_sec)
            window_start, window_steps = time.time(), 0
        if checkpoint_every_n and step % checkpoint_every_n == 0 and step < total_steps:
            save("periodic")
    if stop.requested:
        save(f"stopped by {stop.signal_name}")
        progress.write_status(out_dir, "cancelled", step=step, checkpoint=state["checkpoint"])
        return progress.read_status(out_dir)
    if state.get("saved_step") != step:
        save("end of training")
    progress.write_status(out_dir, "succeeded", step=step, checkpoint=state["checkpoint"])
    return progress.read_status(out_dir)


def load_detector(pipeline_config_path: str | os.PathLike, checkpoint_path: str | None = None):
    """`(config, detector)` with every weight from `checkpoint_path` (a `ckpt-N` prefix or a
    directory; Boxwise's or the TF OD API's layout). Raises `Invalid` unless every variable matches."""
    doc = ConfigDocument.load(pipeline_config_path)
    config = training_config(replace_fine_tune_for_inference(doc))
    model = build_detector(config.model)
    if checkpoint_path:
        restore.restore_weights(model, checkpoint_path, kind="inference")
    return config, model


def replace_fine_tune_for_inference(doc: ConfigDocument) -> ConfigDocument:
    """A copy of `doc` without `fine_tune_checkpoint`: inference restores a trained checkpoint, so
    the backbone's starting weights are neither needed nor required to exist."""
    copy = ConfigDocument(doc.text, doc.path)
    for field in ("train_config.fine_tune_checkpoint", "train_config.fine_tune_checkpoint_type"):
        try:
            copy.remove(field)
        except Exception:  # noqa: BLE001 - absent
            pass
    return copy


