"""TFLite against the SavedModel on CPU: per-image latency (p50/p95, 1 and 2 threads) of the float32
and int8 .tflite (LiteRT) and of the SavedModel's serving_default, on the same images; file sizes;
held-out mAP@0.5 of each.

    .venv/bin/python bench/tflite_bench.py [--steps 300] [--images 50]

Trains the `quick` recipe (128 px, MobileNetV2 width 0.35) with the trainer tests' settings
(`tests/training/conftest.tiny_config`: learning rate 0.01, no augmentation; the template's own
schedule learns nothing in 300 steps) for `--steps` on generated shapes once into
bench/out/tflite_bench/ (reused on later runs), exports it with `export-model` and with
`export-tflite` (none and int8, 100 detections, default NMS; and float32 with
--use_regular_nms for its mAP), then times each model in its own
process (TensorFlow's thread count is fixed at start-up): `intra_op_parallelism` = threads for
the SavedModel, `num_threads` for LiteRT. The time per image covers what a caller does per frame:
the SavedModel call on uint8 pixels (it resizes, normalises and runs NMS inside), and for
TFLite normalising, set_tensor, invoke and reading the four outputs. Prints a Markdown table
for BENCHMARKS.md and writes bench/out/tflite_bench.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
WORK = REPO / "bench" / "out" / "tflite_bench"
SIZE = 128


def _summary(values: list[float]) -> dict[str, float]:
    from bench.predict_bench import summary
    return summary(values)


def measure(kind: str, path: str, images_file: str, threads: int, warmup: int = 5) -> dict:
    """Time one model on the images in `images_file` (uint8 [N, H, W, 3] .npy), in this process."""
    import numpy as np
    images = np.load(images_file)
    if kind == "saved_model":
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        serve = tf.saved_model.load(path).signatures["serving_default"]

        def once(pixels):
            out = serve(input_tensor=tf.constant(pixels[np.newaxis]))
            return int(out["num_detections"][0])
    else:
        from ai_edge_litert.interpreter import Interpreter
        spec = json.loads((Path(path) / "model.json").read_text())
        runner = Interpreter(model_path=str(Path(path) / "model.tflite"), num_threads=threads)
        runner.allocate_tensors()
        outputs = [t["index"] for t in spec["outputs"].values()]

        def once(pixels):
            runner.set_tensor(spec["input"]["index"], (pixels.astype(np.float32) / 127.5 - 1.0)[np.newaxis])
            runner.invoke()
            return [runner.get_tensor(i) for i in outputs]
    for pixels in images[:warmup]:
        once(pixels)
    times = []
    for pixels in images:
        started = time.perf_counter()
        once(pixels)
        times.append((time.perf_counter() - started) * 1000)
    return _summary(times)


def prepare(steps: int) -> dict:
    """Data, a trained run and its three exports under WORK (each made once)."""
    from backend.training.savedmodel_export import export_model
    from backend.training.tflite_export import export_tflite
    from backend.training.train import run_training
    from tests.training import shapes
    from tests.training.conftest import tiny_config

    data = WORK / "data"
    if not (data / "label_map.pbtxt").is_file():
        shapes.write_dataset(data, "train", 128, size=SIZE, shards=2, seed=0)
        shapes.write_dataset(data, "val", 50, size=SIZE, shards=1, seed=1)
        shapes.write_label_map(data)
    train_glob, val_glob = str(data / "train.record-?????-of-00002"), str(data / "val.record-?????-of-00001")
    run = WORK / f"run_{steps}"
    if not (run / "status.json").is_file() or json.loads((run / "status.json").read_text())["state"] != "succeeded":
        config = WORK / "pipeline.config"
        config.write_text(tiny_config(data, train_glob, val_glob, size=SIZE, num_steps=steps, batch_size=16,
                                      augment=False))
        run_training(config, run, checkpoint_every_n=steps)
    exports = {"saved_model": WORK / f"export_{steps}"}
    if not (exports["saved_model"] / "saved_model" / "saved_model.pb").is_file():
        export_model(run / "pipeline.config", run, exports["saved_model"])
    for quantize in ("none", "int8"):
        exports[quantize] = WORK / f"tflite_{steps}_{quantize}"
        if not (exports[quantize] / "model.tflite").is_file():
            export_tflite(run / "pipeline.config", run, exports[quantize], max_detections=100, quantize=quantize,
                          representative_records=[train_glob])
    exports["regular_nms"] = WORK / f"tflite_{steps}_none_regular_nms"
    if not (exports["regular_nms"] / "model.tflite").is_file():
        export_tflite(run / "pipeline.config", run, exports["regular_nms"], max_detections=100, use_regular_nms=True)
    return {"val_glob": val_glob, "label_map": data / "label_map.pbtxt", "exports": exports}


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps of the benchmarked model")
    parser.add_argument("--images", type=int, default=50, help="timed images per model (held-out, 128 px)")
    parser.add_argument("--measure", nargs=4, metavar=("KIND", "PATH", "IMAGES", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        kind, path, images_file, threads = args.measure
        print(json.dumps(measure(kind, path, images_file, int(threads))))
        return 0

    import numpy as np
    from backend.training import tflite_export as tl
    made = prepare(args.steps)
    exports = made["exports"]
    held_out = tl.held_out_images([made["val_glob"]], SIZE, SIZE)
    images_file = WORK / "images.npy"
    np.save(images_file, np.stack([item["pixels"] for item in held_out][: args.images]))
    maps = {"saved_model": tl.map_50(tl.saved_model_detector(exports["saved_model"] / "saved_model"), held_out,
                                     made["label_map"])}
    for quantize in ("none", "int8", "regular_nms"):
        maps[quantize] = tl.map_50(tl.TFLiteDetector(exports[quantize]).detect, held_out, made["label_map"])
    sizes = {"saved_model": _size(exports["saved_model"] / "saved_model"),
             **{q: (exports[q] / "model.tflite").stat().st_size for q in ("none", "int8")}}
    targets = {"saved_model": exports["saved_model"] / "saved_model", "none": exports["none"], "int8": exports["int8"]}
    latency = {}
    for name, path in targets.items():
        for threads in (1, 2):
            command = [sys.executable, __file__, "--measure", "saved_model" if name == "saved_model" else "tflite",
                       str(path), str(images_file), str(threads)]
            result = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            if result.returncode:
                sys.stderr.write(result.stderr)
                return 1
            latency[f"{name}@{threads}"] = json.loads(result.stdout.strip().splitlines()[-1])
    load = os.getloadavg()
    names = {"saved_model": "SavedModel (TF 2.21)", "none": "float32 .tflite (LiteRT)", "int8": "int8 .tflite (LiteRT)"}
    print(f"\n{len(np.load(images_file))} images of {SIZE} px, quick recipe after {args.steps} steps; "
          f"held-out mAP@0.5 on {len(held_out)} images; load average at the end {load[0]:.2f}\n")
    print("| model | size (MB) | 1 thread p50 / p95 (ms) | 2 threads p50 / p95 (ms) | p50 vs SavedModel (2 threads) | mAP@0.5 | Δ mAP vs SavedModel |")
    print("|---|---|---|---|---|---|---|")
    base = latency["saved_model@2"]["p50"]
    for name in targets:
        one, two = latency[f"{name}@1"], latency[f"{name}@2"]
        print(f"| {names[name]} | {sizes[name] / 1024**2:.2f} | {one['p50']} / {one['p95']} | {two['p50']} / {two['p95']} "
              f"| {two['p50'] / base:.2f}× | {maps[name]:.3f} | {maps[name] - maps['saved_model']:+.3f} |")
    print(f"\nfloat32 .tflite with --use_regular_nms (per-class NMS, as the SavedModel): mAP@0.5 "
          f"{maps['regular_nms']:.3f} ({maps['regular_nms'] - maps['saved_model']:+.3f} vs SavedModel)")
    result = {"steps": args.steps, "images": int(len(np.load(images_file))), "held_out": len(held_out),
              "sizes": sizes, "latency_ms": latency, "map_50": maps, "loadavg": load}
    (WORK.parent / "tflite_bench.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
