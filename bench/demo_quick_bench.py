"""A template on the demo project, the way a new user runs it: held-out mAP@0.5 against wall time.

    .venv/bin/python bench/demo_quick_bench.py                       # quick template, ~15 min on 2 idle cores
    .venv/bin/python bench/demo_quick_bench.py --template default --eval-every 1000
    .venv/bin/python bench/demo_quick_bench.py --set model.ssd.feature_extractor.depth_multiplier=0.5

The path: the demo project (`backend.demo.create_demo_project`: 60 generated 320x240 scenes,
45 labeled) in a fresh data folder -> a TFRecord dataset version with the default split ->
the template filled from that version (`saved_configs.fill_from_dataset_version`; `--set PATH=VALUE`
edits on top) -> `python -m backend train` (the real CLI) in segments of `--eval-every` steps,
each resuming -> every checkpoint scored by the CLI's evaluation mode on the held-out split.
Prints step, cumulative training wall time (process starts included) and mAP / mAP@0.5, with
the 1-minute load average while training (the machine is shared). JSON to bench/out/.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--template", default="quick")
    parser.add_argument("--eval-every", type=int, default=500, help="steps per training segment")
    parser.add_argument("--steps", type=int, default=None, help="total steps (default: the template's num_steps)")
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                        help="config edits after filling, e.g. train_config.batch_size=8")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="demo_bench_"))
    os.environ["BOXWISE_DATA"] = str(work / "data")
    from backend import auth, dataset_versions, demo, saved_configs
    from backend.db import connect
    from backend.config_document import ConfigDocument
    from parity_bench import boxwise_evaluate, boxwise_train

    try:
        db = connect()
        admin = auth.create_first_admin(db, "bench", "bench-password-1")
        project = demo.create_demo_project(db, admin)
        version = dataset_versions.create_export(db, admin, project["id"], "tfrecord")
        dataset = dataset_versions.dataset_version(db, version["id"])
        text = saved_configs.fill_from_dataset_version(saved_configs.templates()[args.template], dataset)
        doc = ConfigDocument(text)
        for edit in args.set:
            path, _, value = edit.partition("=")
            doc.set_literal(path.strip(), value)
        total = args.steps or int(doc.get("train_config.num_steps"))
        config = work / "pipeline.config"
        config.write_text(doc.text, encoding="utf-8")
        counts = version.get("counts") or {}
        print(f"demo project: {counts}; template {args.template}, {total} steps, edits {args.set}", flush=True)

        model_dir = work / "run"
        rows, train_seconds = [], 0.0
        segments = list(range(args.eval_every, total, args.eval_every)) + [total]
        for steps in segments:
            info = boxwise_train(config, model_dir, steps, work / f"train-{steps}.log", checkpoint_every_n=steps)
            train_seconds += info["wall_seconds"]
            result = boxwise_evaluate(config, model_dir, work / f"eval-{steps}.log")
            scored = max(result["metrics"].values(), key=lambda r: r["step"])
            row = {"step": scored["step"], "train_wall_seconds": round(train_seconds, 1),
                   "map": round(scored["metrics"]["DetectionBoxes_Precision/mAP"], 4),
                   "map50": round(scored["metrics"]["DetectionBoxes_Precision/mAP@.50IOU"], 4),
                   "num_images": scored["num_images"], "load": info["load"]}
            rows.append(row)
            print(f"step {row['step']:5d}  train wall {train_seconds / 60:5.1f} min  mAP {row['map']:.3f}  "
                  f"mAP@0.5 {row['map50']:.3f}  ({row['num_images']} held-out images, load {info['load']})",
                  flush=True)
        report = {"template": args.template, "edits": args.set, "total_steps": total, "counts": counts,
                  "rows": rows, "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        out = args.out or REPO / "bench" / "out" / f"demo_{args.template}_bench.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {out}")
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
