"""A template on the demo project, the way a new user runs it: held-out mAP@0.5 against wall time.

    .venv/bin/python bench/demo_quick_bench.py                       # quick template, ~15 min on 2 idle cores
    .venv/bin/python bench/demo_quick_bench.py --template default --eval-every 1000
    .venv/bin/python bench/demo_quick_bench.py --set model.ssd.feature_extractor.depth_multiplier=0.5
    .venv/bin/python bench/demo_quick_bench.py --template default --doctor-only   # no training
    .venv/bin/python bench/demo_quick_bench.py --speed-sizes 128 192 256 320 --steps 60  # CPU s/step only

The path: the demo project (`backend.demo.create_demo_project`: 60 generated 320x240 scenes,
45 labeled) in a fresh data folder -> a TFRecord dataset version with the default split ->
the template filled from that version (`saved_configs.fill_from_dataset_version`; `--set PATH=VALUE`
edits on top) -> `python -m backend train` (the real CLI) in segments of `--eval-every` steps,
each resuming -> every checkpoint scored by the CLI's evaluation mode on the held-out split.
Prints step, cumulative training wall and CPU time (process starts included; CPU time is the
training process's user + system seconds from /proc, sampled every second, so it undercounts by
at most a second per segment) and mAP / mAP@0.5, with the 1-minute load average while training
(the machine is shared: CPU minutes are the figure that does not depend on the load).
JSON to bench/out/ (`--label` names the file).

`--speed-sizes` measures step cost only: for each input size (the template's resizer height and
width set to it, nothing else changed) one training process of `--steps` steps (default 60), no
evaluation, one process at a time; prints steady CPU and wall seconds per step (from the first
logged step, after tracing, to the last) and the CPU ratio to the first size, the baseline of
the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import _cli

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def steady_cpu_per_step(model_dir: Path, info: dict, done: int) -> float | None:
    """CPU seconds per step of one training segment, from its first logged row after step `done`
    (the trace and the restore are before it) to its last."""
    from parity_bench import cpu_between
    rows = [json.loads(line) for line in (model_dir / "progress.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("phase") == "train" and r["step"] > done]
    if len(rows) < 2 or rows[-1]["step"] == rows[0]["step"]:
        return None
    cpu = cpu_between(info["cpu_samples"], rows[0]["time"], rows[-1]["time"])
    return None if cpu is None else round(cpu / (rows[-1]["step"] - rows[0]["step"]), 3)


def speed_sizes(args, doc, work: Path) -> int:
    """CPU and wall seconds per step of the filled template at each of `args.speed_sizes`."""
    from parity_bench import boxwise_train
    steps = args.steps or 60
    rows = []
    for size in args.speed_sizes:
        doc.set("model.ssd.image_resizer.fixed_shape_resizer.height", size)
        doc.set("model.ssd.image_resizer.fixed_shape_resizer.width", size)
        config = work / f"pipeline-{size}.config"
        config.write_text(doc.text, encoding="utf-8")
        model_dir = work / f"speed-{size}"
        info = boxwise_train(config, model_dir, steps, work / f"speed-{size}.log", checkpoint_every_n=steps)
        history = [json.loads(line) for line in (model_dir / "progress.jsonl").read_text().splitlines() if line.strip()]
        history = [r for r in history if r.get("phase") == "train"]
        wall = ((history[-1]["time"] - history[0]["time"]) / (history[-1]["step"] - history[0]["step"])
                if len(history) > 1 and history[-1]["step"] > history[0]["step"] else None)
        row = {"size": size, "steps": steps, "batch_size": int(doc.get("train_config.batch_size")),
               "steady_cpu_seconds_per_step": steady_cpu_per_step(model_dir, info, 0),
               "steady_wall_seconds_per_step": None if wall is None else round(wall, 3),
               "process_cpu_seconds": round(info["cpu_samples"][-1][1], 1) if info["cpu_samples"] else None,
               "load": info["load"]}
        base = rows[0]["steady_cpu_seconds_per_step"] if rows else row["steady_cpu_seconds_per_step"]
        row["cpu_ratio_to_first"] = (round(row["steady_cpu_seconds_per_step"] / base, 2)
                                     if base and row["steady_cpu_seconds_per_step"] else None)
        rows.append(row)
        print(f"{size:4d} px  steady CPU s/step {row['steady_cpu_seconds_per_step']}  wall s/step "
              f"{row['steady_wall_seconds_per_step']}  x{row['cpu_ratio_to_first']} of {args.speed_sizes[0]} px  "
              f"process CPU {row['process_cpu_seconds']} s  (load {info['load']})", flush=True)
    report = {"template": args.template, "edits": args.set, "speed_rows": rows,
              "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    out = args.out or REPO / "bench" / "out" / f"demo_{args.label or args.template}_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--template", default="quick")
    parser.add_argument("--eval-every", type=int, default=500, help="steps per training segment")
    parser.add_argument("--steps", type=int, default=None, help="total steps (default: the template's num_steps)")
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                        help="config edits after filling, e.g. train_config.batch_size=8")
    parser.add_argument("--label", default=None, help="name of this candidate in the JSON file name")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--doctor-only", action="store_true", help="print the config doctor's findings and stop")
    parser.add_argument("--speed-sizes", type=int, nargs="+", default=None, metavar="PX",
                        help="only CPU seconds per step, one process per input size (the first is the baseline)")
    args = parser.parse_args(argv)

    work = _cli.work_directory("demo_bench_")
    os.environ["BOXWISE_DATA"] = str(work / "data")
    from backend import auth, config_doctor, dataset_versions, demo, saved_configs
    from backend.db import connect
    from backend.config_document import ConfigDocument
    from parity_bench import boxwise_evaluate, boxwise_train

    try:
        db = connect()
        admin = auth.create_first_admin(db, "bench", "bench-password-1")
        project = demo.create_demo_project(db, admin)
        version = dataset_versions.create_export(db, admin, project["id"], "tfrecord")
        text = saved_configs.fill_from_dataset_version(saved_configs.templates()[args.template], version)
        doc = ConfigDocument(text)
        for edit in args.set:
            path, _, value = edit.partition("=")
            doc.set_literal(path.strip(), value)
        if args.speed_sizes:
            return speed_sizes(args, doc, work)
        total = args.steps or int(doc.get("train_config.num_steps"))
        findings = [f"{f.check}: {f.message}" for f in config_doctor.examine(doc.text, version).findings]
        print(f"config doctor: {'; '.join(findings) if findings else 'clean'}", flush=True)
        if args.doctor_only:
            return 0
        config = work / "pipeline.config"
        config.write_text(doc.text, encoding="utf-8")
        counts = version.counts
        print(f"demo project: {counts}; template {args.template}, {total} steps, edits {args.set}", flush=True)

        model_dir = work / "run"
        rows, train_seconds, cpu_seconds = [], 0.0, 0.0
        segments = list(range(args.eval_every, total, args.eval_every)) + [total]
        done = 0
        for steps in segments:
            info = boxwise_train(config, model_dir, steps, work / f"train-{steps}.log", checkpoint_every_n=steps)
            steady = steady_cpu_per_step(model_dir, info, done)
            done = steps
            train_seconds += info["wall_seconds"]
            cpu_seconds += info["cpu_samples"][-1][1] if info["cpu_samples"] else 0.0
            result = boxwise_evaluate(config, model_dir, work / f"eval-{steps}.log")
            scored = max(result["metrics"].values(), key=lambda r: r["step"])
            row = {"step": scored["step"], "train_wall_seconds": round(train_seconds, 1),
                   "train_cpu_seconds": round(cpu_seconds, 1),
                   "map": round(scored["metrics"]["DetectionBoxes_Precision/mAP"], 4),
                   "map50": round(scored["metrics"]["DetectionBoxes_Precision/mAP@.50IOU"], 4),
                   "map75": round(scored["metrics"]["DetectionBoxes_Precision/mAP@.75IOU"], 4),
                   "steady_cpu_seconds_per_step": steady,
                   "num_images": scored["num_images"], "load": info["load"]}
            rows.append(row)
            print(f"step {row['step']:5d}  train wall {train_seconds / 60:5.1f} min  CPU {cpu_seconds / 60:5.1f} min  "
                  f"mAP {row['map']:.3f}  "
                  f"mAP@0.5 {row['map50']:.3f}  mAP@0.75 {row['map75']:.3f}  steady CPU s/step {steady}  "
                  f"({row['num_images']} held-out images, load {info['load']})",
                  flush=True)
        report = {"template": args.template, "label": args.label, "edits": args.set, "doctor": findings, "total_steps": total, "counts": counts,
                  "rows": rows, "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        _cli.write_report(args.out or _cli.OUT / f"demo_{args.label or args.template}_bench.json", report)
    finally:
        _cli.remove_work_directory(work, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
