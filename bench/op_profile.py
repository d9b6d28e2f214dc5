"""Op by op: where the CPU time of one training step goes, in Boxwise and in the OD API (issue 11).

    .venv/bin/python bench/op_profile.py --trainer boxwise --config parity --steps 20
    source /work/oracle/env.sh && $ODPY bench/op_profile.py --trainer odapi --config parity --steps 20
    .venv/bin/python bench/op_profile.py --compare bench/out/op_profile_boxwise.json bench/out/op_profile_odapi.json

`--trainer boxwise` builds the trainer's step (`backend.training.train`: `step_losses`, the same
optimizer and `train_dataset`) in a `tf.function`; `--trainer odapi` (run with the OD API's
python, TF 2.15) builds `model_lib_v2.eager_train_step` on the same config in a `tf.function`,
as `model_main_tf2.py` does (one step per call here in both). Both read the config's
TFRecords with augmentation. After `--warmup` steps, `--steps` steps run under TensorFlow's
profiler (`tf.profiler.experimental`); the host trace's op events (`name:Type`) are summed per
op type and per op name, self time (an event's duration less the events nested in it on the
same thread). Prints the top op types with milliseconds per step and count per step;
`--compare` puts two such JSON files side by side. JSON to bench/out/op_profile_<trainer>.json.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import _cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "odapi"
PARITY = FIXTURES / "parity"


def parity_config_text(kind: str, batch_size: int | None) -> str:
    """The config parity_bench writes, without importing backend (the OD API's python has no
    Boxwise dependencies): parity as is, or small128's architecture on the parity records."""
    import re
    if kind == "parity":
        text = (PARITY / "pipeline.config").read_text(encoding="utf-8").replace("PARITY_DIR", str(PARITY))
    else:
        sys.path.insert(0, str(REPO))
        sys.path.insert(0, str(REPO / "bench"))
        from parity_bench import write_config
        work = Path(tempfile.mkdtemp(prefix="op_profile_"))
        return write_config(kind, work / "pipeline.config", batch_size).read_text(encoding="utf-8")
    if batch_size:
        text = re.sub(r"(train_config\s*\{[^}]*?batch_size:\s*)\d+", rf"\g<1>{batch_size}", text, count=1)
    return text


def boxwise_step(config_path: Path):
    """The trainer's step and iterator; returns (call, what it runs)."""
    sys.path.insert(0, str(REPO))
    import tensorflow as tf

    from backend.config_document import ConfigDocument
    from backend.training.anchors import generate_anchors
    from backend.training.data import train_dataset
    from backend.training.network import build_detector
    from backend.training.train import build_optimizer, step_losses
    from backend.training.training_config import training_config

    config = training_config(ConfigDocument.load(config_path))
    anchors = tf.constant(generate_anchors(config.model.height, config.model.width, config.model.anchors))
    model = build_detector(config.model)
    optimizer = build_optimizer(config)
    optimizer.build(model.trainable_variables)
    iterator = iter(train_dataset(config.train_input, config.resizer, config.augmentations, config.batch_size,
                                  config.max_number_of_boxes))

    @tf.function
    def train_step(it):
        batch = next(it)
        with tf.GradientTape() as tape:
            losses = step_losses(model, config, anchors, batch["images"], batch["boxes"], batch["classes"])
        grads = tape.gradient(losses["total"], model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return losses["total"]

    return lambda: train_step(iterator), f"Boxwise, TF {tf.__version__}, batch {config.batch_size}"


def odapi_step(config_path: Path):
    """`model_lib_v2.eager_train_step` on the config, with the OD API's input and optimizer."""
    import tensorflow as tf
    from object_detection import inputs, model_lib_v2
    from object_detection.builders import model_builder, optimizer_builder
    from object_detection.utils import config_util

    configs = config_util.get_configs_from_pipeline_file(str(config_path))
    train_config = configs["train_config"]
    model = model_builder.build(configs["model"], is_training=True)
    dataset = inputs.train_input(train_config, configs["train_input_config"], configs["model"], model=model)
    iterator = iter(dataset)
    model_lib_v2._ensure_model_is_built(model, dataset, train_config.unpad_groundtruth_tensors)
    global_step = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step")
    optimizer, _ = optimizer_builder.build(train_config.optimizer, global_step=global_step)

    @tf.function
    def train_step(it):
        features, labels = next(it)
        losses = model_lib_v2.eager_train_step(model, features, labels, train_config.unpad_groundtruth_tensors,
                                               optimizer, add_regularization_loss=True, num_replicas=1)
        global_step.assign_add(1)
        return losses["Loss/total_loss"]

    return lambda: train_step(iterator), f"OD API, TF {tf.__version__}, batch {train_config.batch_size}"


# Host events named like ops that are the executor's own spans around them (not op time).
EXECUTOR_EVENTS = {"KernelAndDeviceFunc", "ExecutorState", "ExecutorDoneCallback", "DecodeImageV2Op"}


def op_times(logdir: str) -> tuple[dict, dict, dict]:
    """Self time (ms) and count per op type and per op name from the host planes of a trace."""
    try:
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
    except ImportError:  # older layouts
        from tensorflow.core.profiler.protobuf import xplane_pb2
    by_type, by_name, count = defaultdict(float), defaultdict(float), defaultdict(int)
    for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(path).read_bytes())
        for plane in space.planes:
            if not plane.name.startswith("/host:CPU"):
                continue
            names = {k: m.name for k, m in plane.event_metadata.items()}
            for line in plane.lines:
                events = sorted(((e.offset_ps, e.duration_ps, names.get(e.metadata_id, "")) for e in line.events),
                                key=lambda e: (e[0], -e[1]))
                # Self time: subtract each event's direct children (events inside it on this thread).
                stack: list[list] = []
                finished = []
                for start, dur, name in events:
                    while stack and start >= stack[-1][0] + stack[-1][1]:
                        finished.append(stack.pop())
                    node = [start, dur, name, dur]
                    if stack:
                        stack[-1][3] -= dur
                    stack.append(node)
                finished.extend(stack)
                for _start, _dur, name, self_ps in finished:
                    if ":" not in name or name.startswith(("tf.data", "Iterator::", "$")):
                        continue
                    op_name, _, op_type = name.rpartition(":")
                    if (not op_type or not op_type.lstrip("_")[:1].isupper() or " " in op_type
                            or op_name.rstrip(":") in EXECUTOR_EVENTS or "::" in name):
                        continue
                    by_type[op_type] += self_ps / 1e9
                    by_name[f"{op_type} {op_name}"] += self_ps / 1e9
                    count[op_type] += 1
    return dict(by_type), dict(by_name), dict(count)


def profile(args) -> int:
    import tensorflow as tf
    _cli.set_threads(args)
    work = Path(tempfile.mkdtemp(prefix=f"op_profile_{args.trainer}_"))
    config_path = work / "pipeline.config"
    config_path.write_text(parity_config_text(args.config, args.batch_size), encoding="utf-8")
    step, what = (boxwise_step if args.trainer == "boxwise" else odapi_step)(config_path)
    for _ in range(args.warmup):
        step().numpy()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(args.steps):
        step().numpy()
    cpu_plain = (time.process_time() - cpu0) / args.steps
    wall_plain = (time.perf_counter() - wall0) / args.steps
    logdir = str(work / "trace")
    tf.profiler.experimental.start(logdir)
    for _ in range(args.steps):
        step().numpy()
    tf.profiler.experimental.stop()
    by_type, by_name, count = op_times(logdir)
    steps = args.steps
    total = sum(by_type.values())
    top = sorted(by_type.items(), key=lambda kv: -kv[1])
    print(f"{what}: {cpu_plain * 1000:.1f} CPU ms/step, {wall_plain * 1000:.1f} wall ms/step without the "
          f"profiler; op self time {total / steps:.1f} ms/step in {sum(count.values()) / steps:.0f} ops/step "
          f"(load {os.getloadavg()[0]:.2f})")
    for op, ms in top[:args.top]:
        print(f"  {op:40s} {ms / steps:8.2f} ms/step  {count[op] / steps:6.0f} /step")
    report = {"trainer": args.trainer, "what": what, "config": args.config, "steps": steps,
              "threads": {"intra": args.intra, "inter": args.inter},
              "cpu_ms_per_step": round(cpu_plain * 1000, 1), "wall_ms_per_step": round(wall_plain * 1000, 1),
              "load_1min": os.getloadavg()[0],
              "op_ms_per_step": {k: round(v / steps, 3) for k, v in top},
              "ops_per_step": {k: count[k] / steps for k, _ in top},
              "top_op_names": {k: round(v / steps, 3) for k, v in
                               sorted(by_name.items(), key=lambda kv: -kv[1])[:200]}}
    _cli.write_report(args.out or _cli.OUT / f"op_profile_{args.trainer}.json", report, indent=1)
    return 0


def compare(paths: list[str], top: int) -> int:
    a, b = (json.loads(Path(p).read_text()) for p in paths)
    print(f"{'op type':36s} {a['trainer']:>10s} {'n':>5s} {b['trainer']:>10s} {'n':>5s} {'diff ms':>8s}")
    ops = set(a["op_ms_per_step"]) | set(b["op_ms_per_step"])
    rows = sorted(ops, key=lambda op: -max(a["op_ms_per_step"].get(op, 0), b["op_ms_per_step"].get(op, 0)))
    for op in rows[:top]:
        x, y = a["op_ms_per_step"].get(op, 0.0), b["op_ms_per_step"].get(op, 0.0)
        print(f"{op:36s} {x:10.2f} {a['ops_per_step'].get(op, 0):5.0f} {y:10.2f} "
              f"{b['ops_per_step'].get(op, 0):5.0f} {x - y:+8.2f}")
    print(f"{'all ops':36s} {sum(a['op_ms_per_step'].values()):10.2f} {'':5s} "
          f"{sum(b['op_ms_per_step'].values()):10.2f}")
    print(f"{'CPU ms/step (no profiler)':36s} {a['cpu_ms_per_step']:10.1f} {'':5s} {b['cpu_ms_per_step']:10.1f}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainer", choices=["boxwise", "odapi"], default="boxwise")
    _cli.add_training_config(parser)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--top", type=int, default=30)
    _cli.add_threads(parser)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--compare", nargs=2, metavar="JSON")
    args = parser.parse_args(argv)
    if args.compare:
        return compare(args.compare, args.top)
    if args.trainer == "odapi" and args.config != "parity":
        parser.error("--trainer odapi runs the parity config only (small128's is written with Boxwise's config code)")
    return profile(args)


if __name__ == "__main__":
    sys.exit(main())
