"""Transfer benchmark: does fine-tuning from a starting point beat scratch on a small dataset?

    .venv/bin/python bench/transfer_bench.py            # ~15 minutes on 2 CPU cores
    .venv/bin/python bench/transfer_bench.py --source-steps 300 --steps 100,200

1. Builds a starting point the way a user would get one: trains the quick template (128 px) on a
   generated source dataset (red squares and blue discs, `tests/training/shapes.py`), exports
   it (`export-model`: the zoo layout), packs it as `<name>.tar.gz` and imports it
   (`zoo.import_tarball`, with the checkpoint check).
2. Makes a different, small target dataset through the product's own path: the demo project's
   scenes (circles, squares and triangles in other colours and sizes), `--target-images` of
   them, exported as a TFRecord dataset version with a train/val split.
3. Trains on the target twice at equal steps, evaluating after each of `--steps`: from the
   starting point (`zoo.fine_tune_text`: its network and weights, a fresh class head since the
   classes differ) and from scratch (the same config without `fine_tune_checkpoint`).
Prints mAP@0.5 and mAP of both at each step count and writes bench/out/transfer_bench.json.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tarfile
import time
from pathlib import Path

import _cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source-images", type=int, default=256)
    parser.add_argument("--source-steps", type=int, default=600)
    parser.add_argument("--target-images", type=int, default=60, help="demo scenes; 2/3 train, 1/3 val")
    parser.add_argument("--steps", default="100,200,400", help="target step counts to evaluate at")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    steps = sorted(int(s) for s in args.steps.split(","))
    logging.basicConfig(level=logging.WARNING)
    work = _cli.work_directory("transfer_bench_")
    os.environ["BOXWISE_DATA"] = str(work / "data")

    import tensorflow as tf

    from backend import auth, dataset_versions, db as database, demo, saved_configs, zoo
    from backend.config_document import ConfigDocument
    from backend.training.evaluate import evaluate_checkpoint
    from backend.training.savedmodel_export import export_model
    from backend.training.train import run_training
    from tests.training.conftest import tiny_config
    from tests.training.shapes import write_dataset, write_label_map

    started = time.perf_counter()
    try:
        db = database.connect()
        admin = auth.create_first_admin(db, "admin", "a-long-admin-password")
        # 1. The starting point.
        source = work / "source"
        train_glob, _ = write_dataset(source, "train", args.source_images, size=128, shards=2, seed=0,
                                      min_fraction=0.15, max_fraction=0.4)
        val_glob, _ = write_dataset(source, "val", 32, size=128, shards=1, seed=1, min_fraction=0.15, max_fraction=0.4)
        write_label_map(source)
        source_config = work / "source.config"
        source_config.write_text(tiny_config(source, train_glob, val_glob, size=128, batch_size=8,
                                             num_steps=args.source_steps, learning_rate=0.004))
        t0 = time.perf_counter()
        run_training(source_config, work / "source_run", checkpoint_every_n=0)
        source_seconds = time.perf_counter() - t0
        source_map = evaluate_checkpoint(source_config, tf.train.latest_checkpoint(str(work / "source_run")))
        name = "shapes_ssd_mobilenet_v2_fpnlite_128x128"
        export_model(source_config, work / "source_run", work / "export" / name)
        tarball = work / f"{name}.tar.gz"
        with tarfile.open(tarball, "w:gz") as archive:
            archive.add(work / "export" / name, arcname=name)
        point = zoo.import_tarball(db, admin, tarball.read_bytes(), tarball.name)
        print(f"starting point: {args.source_steps} steps on {args.source_images} source images in "
              f"{source_seconds:.0f} s, source mAP@0.5 "
              f"{source_map['metrics']['DetectionBoxes_Precision/mAP@.50IOU']:.3f}; "
              f"checkpoint check: {point['restore'].get('summary', point['restore'])}")

        # 2. The target: demo scenes exported as a dataset version.
        project = demo.create_demo_project(db, admin, name="target", count=args.target_images, seed=11)
        db.execute("update images set status = 'labeled' where project_id = ?", [project["id"]])
        version = dataset_versions.create_export(db, admin, project["id"], "tfrecord",
                                        splits={"train": 2 / 3, "val": 1 / 3}, seed=1)
        base = saved_configs.fill_from_dataset_version(saved_configs.templates()["quick"], version)

        # 3. Fine-tune vs scratch at equal steps.
        variants = {"from starting point": zoo.fine_tune_text(db, base, point["id"]),
                    "from scratch": zoo.start_from(db, zoo.fine_tune_text(db, base, point["id"]), "scratch")}
        results: dict[str, list[dict]] = {}
        for label, text in variants.items():
            config_path = work / f"{label.replace(' ', '_')}.config"
            doc = ConfigDocument(text)
            doc.set("train_config.num_steps", steps[-1])
            config_path.write_text(doc.text)
            model_dir = work / label.replace(" ", "_")
            results[label] = []
            for count in steps:
                t0 = time.perf_counter()
                run_training(config_path, model_dir, num_train_steps=count, checkpoint_every_n=0)
                result = evaluate_checkpoint(config_path, tf.train.latest_checkpoint(str(model_dir)))
                metrics = result["metrics"]
                results[label].append({"step": count, "seconds": round(time.perf_counter() - t0, 1),
                                       "map50": round(metrics["DetectionBoxes_Precision/mAP@.50IOU"], 4),
                                       "map": round(metrics["DetectionBoxes_Precision/mAP"], 4)})
                print(f"{label:20s} step {count:5d}  mAP@0.5 {results[label][-1]['map50']:.3f}  "
                      f"mAP {results[label][-1]['map']:.3f}", flush=True)
        print(f"\n{'step':>6}  {'starting point mAP@0.5':>22}  {'scratch mAP@0.5':>15}  difference")
        for a, b in zip(results["from starting point"], results["from scratch"]):
            print(f"{a['step']:6d}  {a['map50']:22.3f}  {b['map50']:15.3f}  {a['map50'] - b['map50']:+.3f}")
        report = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                              "tensorflow": tf.__version__, "load_average": os.getloadavg()},
                  "settings": vars(args), "source_seconds": round(source_seconds, 1),
                  "source_map50": source_map["metrics"]["DetectionBoxes_Precision/mAP@.50IOU"],
                  "restore": point["restore"], "results": results,
                  "total_seconds": round(time.perf_counter() - started, 1)}
        _cli.write_report(_cli.OUT / "transfer_bench.json", report)
    finally:
        _cli.remove_work_directory(work, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
