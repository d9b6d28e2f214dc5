"""Does the config doctor's fix make a run learn? The issue's case, trained both ways.

    .venv/bin/python bench/doctor_fix_bench.py            # ~10 minutes on 2 CPU cores
    .venv/bin/python bench/doctor_fix_bench.py --steps 300 --images 120

A project of generated 128×128 scenes with discs and squares of 14–44 px (the doctor tests'
`shapes_version`) is exported as a dataset version. The zoo recipe shrunk to 128 px
(`tests/fixtures/doctor/zoo_fpnlite_128.config`, anchor_scale 4) is trained on it as written
and with the doctor's fixes applied ("Fix it"); both get the same batch size, steps and a
cosine schedule over exactly those steps. `--fixes coverage` applies only the anchor-coverage
fix; `--fixes all` (the default) applies every finding's fix, re-examines the result and
applies what the doctor then suggests, until no finding has a fix left (at most 4 rounds), so
the combined fixes are scored together. Prints the findings, the fixes and the held-out
mAP@0.5 of both runs; writes bench/out/doctor_fix_bench_<base>_<fixes>.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import _cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

COSINE = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="generated scenes (the export splits 80/20)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--base", choices=("zoo", "quick"), default="zoo",
                        help="zoo: the zoo recipe at 128 px (momentum, as the issue ran it); quick: the quick "
                             "template (Adam) with the zoo's anchor_scale 4, so only the anchors differ")
    parser.add_argument("--fixes", choices=("all", "coverage"), default="all",
                        help="all: every finding's fix, re-examined until none is left; coverage: the anchor "
                             "coverage fix alone")
    parser.add_argument("--doctor-only", action="store_true", help="print the findings and fixes, train nothing")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    work = _cli.work_directory("doctor_fix_bench_")
    os.environ["BOXWISE_DATA"] = str(work / "data")

    from backend import auth, config_doctor, db as database, saved_configs
    from backend.config_document import ConfigDocument
    from tests.helpers import ZOO_128, shapes_version

    try:
        db = database.connect()
        admin = auth.create_first_admin(db, "admin", "a-long-admin-password")
        version = shapes_version(db, admin, "small-objects", count=args.images, seed=3)
        source = ZOO_128.read_text() if args.base == "zoo" else saved_configs.templates()["quick"]
        doc = ConfigDocument(saved_configs.fill_from_dataset_version(source, version))
        cosine = COSINE if args.base == "zoo" else COSINE.replace("momentum_optimizer", "adam_optimizer")
        doc.set("train_config.batch_size", args.batch_size)
        doc.set("train_config.num_steps", args.steps)
        doc.set(f"{cosine}.total_steps", args.steps)
        doc.set(f"{cosine}.warmup_steps", min(100, args.steps // 10))
        if args.base == "quick":
            doc.set("model.ssd.anchor_generator.multiscale_anchor_generator.anchor_scale", 4.0)
        base = doc.text
        report = config_doctor.examine(base, version)
        for f in report.findings:
            print(f"doctor, as written: {f}")
        if args.fixes == "coverage":
            fixes = [next(f for f in report.findings if f.check == "anchor_coverage").fix]
            fixed = config_doctor.apply_fix(base, fixes[0])
        else:
            fixed, fixes = base, []
            for _ in range(4):
                fixable = [f for f in config_doctor.examine(fixed, version).findings if f.fix]
                if not fixable:
                    break
                for f in fixable:
                    fixes.append(f.fix)
                    fixed = config_doctor.apply_fix(fixed, f.fix)
        after = config_doctor.examine(fixed, version).findings
        for fix in fixes:
            print(f"fix applied: {fix}")
        for f in after:
            print(f"doctor, after the fixes: {f}")
        print("doctor, after the fixes: " + ("nothing left" if not after else f"{len(after)} finding(s) left"))
        if args.doctor_only:
            return 0
        import tensorflow as tf

        from backend.training.evaluate import evaluate_checkpoint
        from backend.training.train import run_training
        results = {}
        fixed_label = "with the doctor's fix" if args.fixes == "coverage" else "with all the doctor's fixes"
        for label, text in (("as written", base), (fixed_label, fixed)):
            config_path = work / f"{label.replace(' ', '_')}.config"
            config_path.write_text(text)
            model_dir = work / label.replace(" ", "_").replace("'", "")
            started = time.perf_counter()
            run_training(config_path, model_dir, checkpoint_every_n=0)
            seconds = time.perf_counter() - started
            metrics = evaluate_checkpoint(config_path, tf.train.latest_checkpoint(str(model_dir)))["metrics"]
            results[label] = {"seconds": round(seconds, 1),
                              "map50": round(metrics["DetectionBoxes_Precision/mAP@.50IOU"], 4),
                              "map": round(metrics["DetectionBoxes_Precision/mAP"], 4)}
            print(f"{label:28s} {args.steps} steps in {seconds:6.0f} s: mAP@0.5 {results[label]['map50']:.3f}, "
                  f"mAP {results[label]['map']:.3f}", flush=True)
        _cli.write_report(_cli.OUT / f"doctor_fix_bench_{args.base}_{args.fixes}.json", {
            "settings": vars(args), "load_average": os.getloadavg(), "findings": report.to_json(),
            "fixes": fixes, "findings_after": [asdict(f) for f in after], "results": results}, default=str)
    finally:
        _cli.remove_work_directory(work, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
