"""Prediction speed on CPU: decode → inference → post-processing per image, against the raw
SavedModel call alone, in the same run; and batch throughput (end to end, and through batch
prediction into SQLite drafts).

    .venv/bin/python bench/predict_bench.py                 # the zoo_gpu template (320×320 fpnlite)
    .venv/bin/python bench/predict_bench.py --model DIR     # any export (TF OD API or Boxwise)

Without --model it exports the `zoo_gpu` template (ssd_mobilenet_v2_fpnlite_320x320) after one
training step on generated shapes, once, into bench/out/default_export/ (weights do not change
the speed), and the same checkpoint once more without batch-norm folding into
bench/out/default_export_unfolded/, whose raw call is timed alongside as the before/after
baseline. Images are 320×320 JPEGs of shapes. Prints a Markdown table for BENCHMARKS.md and
writes bench/out/predict_bench.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _cli

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
OUT = REPO / "bench" / "out"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    """p50, p95 and mean of timings in ms, rounded to 0.1."""
    return {"p50": round(percentile(values, 50), 1), "p95": round(percentile(values, 95), 1),
            "mean": round(statistics.fmean(values), 1)}


def default_export() -> Path:
    """bench/out/default_export: the zoo_gpu template exported after one training step."""
    from tests.training import shapes

    target, unfolded, work = OUT / "default_export", OUT / "default_export_unfolded", OUT / "default_train"
    if all((d / "saved_model" / "saved_model.pb").is_file() for d in (target, unfolded)):
        return target
    from backend.training.templates import render_template
    from backend.training.train import run_training

    train_glob, _ = shapes.write_dataset(work / "data", "train", 4, size=320)
    val_glob, _ = shapes.write_dataset(work / "data", "val", 2, size=320, seed=1)
    label_map = shapes.write_label_map(work / "data")
    config = work / "pipeline.config"
    config.write_text(render_template("zoo_gpu", num_classes=2, train_input=train_glob, eval_input=val_glob,
                                      label_map_path=str(label_map), num_steps=1, batch_size=1))
    status = run_training(config, work / "model_dir", num_train_steps=1, checkpoint_every_n=1,
                          record_summaries=False)
    if status["state"] != "succeeded":
        raise SystemExit(f"training for the bench failed: {status}")
    subprocess.run([sys.executable, "-m", "backend", "export-model", "--input_type", "image_tensor",
                    "--pipeline_config_path", str(config), "--trained_checkpoint_dir", str(work / "model_dir"),
                    "--output_directory", str(target)], cwd=REPO, check=True)
    from backend.training.savedmodel_export import export_model
    export_model(config, work / "model_dir", unfolded, fold=False)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="export directory (default: the zoo_gpu template, exported once)")
    parser.add_argument("--images", type=int, default=60, help="timed images (default 60)")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch-images", type=int, default=40, help="images for the batch-prediction run")
    args = parser.parse_args()

    from backend import inference
    from tests.training import shapes

    model_dir = Path(args.model) if args.model else default_export()
    started = time.perf_counter()
    model = inference.load_model(model_dir)
    load_s = time.perf_counter() - started
    warm_ms = model.warm_up((args.size, args.size))
    # Without --model: the same network exported without batch-norm folding, timed alongside.
    unfolded = None if args.model else inference.load_model(OUT / "default_export_unfolded", warm_up=True)
    rng = random.Random(0)
    encoded = [shapes.make_image(args.size, rng)[0] for _ in range(args.images)]
    for data in encoded[:3]:  # settle caches and thread pools
        model.predict(data, "warm")

    # Interleave the two measurements image by image so both see the same machine load.
    steps = {"decode": [], "preprocess": [], "inference": [], "postprocess": [], "total": []}
    raw, raw_cpu, raw_unfolded = [], [], []
    for data in encoded:
        prediction = model.predict(data, "bench")
        for key in steps:
            steps[key].append(prediction.timings_ms[key])
        batch = model.input_array(prediction.picture)
        begin, begin_cpu = time.perf_counter(), time.process_time()
        model.run(batch)
        raw.append((time.perf_counter() - begin) * 1000)
        # CPU time of all threads: a load-independent measure of the work in one call.
        raw_cpu.append((time.process_time() - begin_cpu) * 1000)
        if unfolded is not None:
            begin = time.perf_counter()
            unfolded.run(batch)
            raw_unfolded.append((time.perf_counter() - begin) * 1000)

    begin = time.perf_counter()
    for data in encoded:
        model.predict(data, "throughput")
    end_to_end_ips = len(encoded) / (time.perf_counter() - begin)
    batch_ips, batch_drafts = batch_prediction_throughput(model_dir, encoded[: args.batch_images])

    result = {
        "model": str(model_dir), "images": len(encoded), "size": args.size,
        "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(), "load_s": round(load_s, 1), "warm_up_ms": round(warm_ms),
        "pipeline_ms": {key: summary(v) for key, v in steps.items()},
        "raw_call_ms": summary(raw),
        "raw_call_unfolded_ms": summary(raw_unfolded) if raw_unfolded else None,
        "raw_call_cpu_ms": {"p50": round(percentile(raw_cpu, 50), 1), "mean": round(statistics.fmean(raw_cpu), 1)},
        "end_to_end_images_per_s": round(end_to_end_ips, 1),
        "batch_prediction_images_per_s": round(batch_ips, 1), "batch_prediction_drafts": batch_drafts,
    }
    _cli.write_report(OUT / "predict_bench.json", result)
    print(json.dumps(result, indent=2))
    print(markdown(result))


def batch_prediction_throughput(model_dir: Path, encoded: list[bytes]) -> tuple[float, int]:
    """Images per second of `predictions.predict_project` (read file, predict, store drafts in
    SQLite) over freshly ingested images, in a scratch data directory, model load excluded."""
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["BOXWISE_DATA"] = scratch
        from backend import auth, db as database, images, model_registry, predictions, projects
        db = database.connect(Path(scratch) / "boxwise.db")
        admin = auth.create_first_admin(db, "admin", "bench-password")
        project = projects.create_project(db, admin, "bench", ["square", "disc"])
        images.ingest(db, admin, project["id"], [(f"{i}.jpg", data) for i, data in enumerate(encoded)])
        model = model_registry.register_directory(db, admin, project["id"], model_dir)
        loaded = predictions.inference.load_model(model_dir, warm_up=True)  # load and compile outside the timing
        begin = time.perf_counter()
        progress = predictions.predict_project(db, admin, project["id"], model_id=model["id"], min_score=0.3,
                                               loaded=loaded)
        elapsed = time.perf_counter() - begin
        return progress["done"] / elapsed, progress["drafts"]


def markdown(r: dict) -> str:
    p = r["pipeline_ms"]
    rows = [("decode (Pillow, as at ingest)", p["decode"]), ("preprocess (to uint8 tensor)", p["preprocess"]),
            ("inference (signature call)", p["inference"]), ("post-processing (sort, scale, names)", p["postprocess"]),
            ("**total per image**", p["total"]), ("raw SavedModel call alone", r["raw_call_ms"])]
    if r["raw_call_unfolded_ms"]:
        rows.append(("raw call, same export without batch-norm folding", r["raw_call_unfolded_ms"]))
    lines = ["| step | p50 ms | p95 ms | mean ms |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {v['p50']} | {v['p95']} | {v['mean']} |" for name, v in rows]
    lines.append("")
    lines.append(f"End-to-end throughput: {r['end_to_end_images_per_s']} images/s; batch prediction into "
                 f"SQLite drafts: {r['batch_prediction_images_per_s']} images/s (model load excluded). "
                 f"Model load {r['load_s']} s, first call (warm-up) {r['warm_up_ms']} ms. "
                 f"{r['images']} images {r['size']}×{r['size']}, {r['cpus']} CPUs, 1-min load average "
                 f"{r['load_average_1min']:.1f} (other processes running). CPU time of one raw call "
                 f"(all threads): p50 {r['raw_call_cpu_ms']['p50']} ms.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
