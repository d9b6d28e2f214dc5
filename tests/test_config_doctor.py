"""The config doctor on real dataset versions (Pillow images, exported TFRecords) and by hand:
anchor coverage and its fix, small and elongated objects, schedules, batch and epochs,
classes, random_crop_image, the CLI, run launch and the Configs page's Doctor panel."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from backend import config_doctor as doctor, dataset_versions, demo, run_lifecycle, run_views, saved_configs
from backend.anchor_coverage import AnchorGrid, best_iou, ratio_tolerance, shape_unmatchable
from backend.errors import Invalid
from tests.helpers import ZOO_128, button, shapes_version, signed_in
from tests.helpers import STAND_IN

SHARED_ZOO = (Path(__file__).resolve().parents[1].parent / "shared" / "tfod" / "configs"
              / "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config")
COSINE = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate"


def database_boxes(db, project_id: int) -> np.ndarray:
    """Every human box of the project from SQLite, as pixel yxyx: the doctor's input read
    another way (it reads the exported TFRecords)."""
    rows = db.query("select a.* from annotations a join images i on i.id = a.image_id where i.project_id = ?",
                    [project_id])
    return np.array([[r["ymin"], r["xmin"], r["ymax"], r["xmax"]] for r in rows], dtype=np.float64)


def brute_force_best_iou(boxes_px: np.ndarray, height: int, width: int, anchor_scale: float) -> np.ndarray:
    """Each box's maximum IoU over every anchor the trainer generates (`generate_anchors`)."""
    from backend.training.anchors import AnchorSpec, generate_anchors
    anchors = generate_anchors(height, width, AnchorSpec(anchor_scale=anchor_scale)).astype(np.float64)
    anchors *= [height, width, height, width]
    b, a = boxes_px[:, None, :], anchors[None, :, :]
    inter = (np.clip(np.minimum(b[..., 2], a[..., 2]) - np.maximum(b[..., 0], a[..., 0]), 0, None)
             * np.clip(np.minimum(b[..., 3], a[..., 3]) - np.maximum(b[..., 1], a[..., 1]), 0, None))
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    return (inter / (area_b + area_a - inter)).max(axis=1)


def finding(report: doctor.Report, check: str) -> doctor.Finding:
    found = [f for f in report.findings if f.check == check]
    assert len(found) == 1, [str(f) for f in report.findings]
    return found[0]


@pytest.fixture
def trainer(tmp_path, data_dir):
    """The stand-in trainer (tests/helpers.py) as a configured external runner; its name."""
    from backend import server_settings
    from backend.auth import CLI_ACTOR
    path = tmp_path / "stand_in_trainer.py"
    path.write_text(STAND_IN)
    server_settings.set_runner(CLI_ACTOR, "stand-in", sys.executable, str(path))
    return "stand-in"


@pytest.fixture
def small(db, admin):
    return shapes_version(db, admin, "small-shapes")


@pytest.fixture
def zoo(small):
    return saved_configs.fill_from_dataset_version(ZOO_128.read_text(), small)


# ---------------------------------------------------------------- anchors by hand


def test_best_iou_by_hand_at_128_px_with_anchor_scale_4():
    # 128×128 input, anchor_scale 4: level 3 has 16×16 cells of 8 px (centres 4, 12, ..., 124)
    # and anchors 32×32, 22.6×45.3, 45.3×22.6 (area 1024) and 45.3×45.3, 32×64, 64×32 (2048).
    grid = AnchorGrid(128, 128, anchor_scale=4.0)
    boxes = np.array([
        [52, 52, 68, 68],   # 16×16 on a cell centre (60, 60): 256 / 1024 = 0.25
        [49, 49, 71, 71],   # 22×22 there: 484 / 1024 = 0.47265625
        [48, 48, 72, 72],   # 24×24 there: 576 / 1024 = 0.5625
        [50, 40, 70, 80],   # 20 high × 40 wide, centre (60, 60): inside the 22.6×45.3 anchor, 800 / 1024
        [50, 50, 78, 78],   # 28×28 centred at (64, 64), between centres 60 and 68: against the 32×32
                            # anchor at 68 it overlaps 26×26 = 676 of union 784 + 1024 − 676 = 1132
        [40, 40, 80, 80],   # 40×40 at (60, 60): inside the 45.3×45.3 anchor, 1600 / 2048 = 0.78125
    ], dtype=np.float64)
    expected = [0.25, 484 / 1024, 0.5625, 800 / 1024, 676 / 1132, 0.78125]
    assert best_iou(boxes, grid) == pytest.approx(expected, abs=1e-12)
    # Two of the six are below matched_threshold 0.5: one third unmatched.
    assert np.mean(best_iou(boxes, grid) < 0.5) == pytest.approx(1 / 3)
    # The trainer's own anchors give the same maxima (float32 anchors: 1e-6).
    assert brute_force_best_iou(boxes, 128, 128, 4.0) == pytest.approx(expected, abs=1e-6)


def test_best_iou_equals_the_maximum_over_the_trainers_anchors_on_random_boxes():
    rng = np.random.default_rng(3)
    for height, width, scale in ((128, 128, 4.0), (320, 320, 4.0), (100, 150, 2.5)):
        centres = rng.uniform(0, 1, (400, 2)) * [height, width]
        sides = rng.uniform(3, 90, (400, 2))
        boxes = np.clip(np.concatenate([centres - sides / 2, centres + sides / 2], axis=1), 0, [height, width] * 2)
        fast = best_iou(boxes, AnchorGrid(height, width, anchor_scale=scale))
        # the trainer's anchors are float32 (as the OD API computes them): agreement to 2e-6
        assert np.abs(fast - brute_force_best_iou(boxes, height, width, scale)).max() < 2e-6


def test_matchable_aspect_ratios_by_hand():
    # A box k times wider than a same-area anchor has IoU 1 / (2·sqrt(k) − 1): 0.5 at k = 2.25.
    assert ratio_tolerance(0.5) == 2.25
    assert 1 / (2 * math.sqrt(2.25) - 1) == 0.5
    # Anchors 0.5, 1, 2: ratios 0.2 (0.5 / 2.5) and 5 (2 × 2.5) are out, 4.4 (2 × 2.2) is in. With
    # 0.5, 1, 2, 18 the gap between 4.5 (2 × 2.25) and 8 (18 / 2.25) stays out: 6 and 7.5; 40
    # (18 × 2.22) is in.
    assert shape_unmatchable([0.2, 4.4, 5.0], (1.0, 2.0, 0.5), 0.5).tolist() == [True, False, True]
    assert shape_unmatchable([6.0, 7.5, 40.0], (1.0, 2.0, 0.5, 18.0), 0.5).tolist() == [True, True, False]


def test_boxes_are_resized_as_the_trainer_resizes():
    from backend.anchor_coverage import to_canvas
    box = np.array([[0.5, 0.5, 1.0, 1.0]])
    # fixed_shape stretches a 300×600 image to 128×128.
    assert to_canvas(box, [[300, 600]], {"kind": "fixed_shape", "height": 128, "width": 128}).tolist() == \
        [[64.0, 64.0, 128.0, 128.0]]
    # keep_aspect_ratio 128..256: the short side would be 128 but the long one 256 caps it at
    # scale 256/600, so the image is 128×256 in the top-left of a 256×256 canvas.
    keep = {"kind": "keep_aspect_ratio", "height": 256, "width": 256, "min_dimension": 128, "max_dimension": 256}
    assert to_canvas(box, [[300, 600]], keep).tolist() == [[64.0, 128.0, 128.0, 256.0]]
    # 200×300 at min 100, max 1000: scale 0.5, 100×150.
    keep = {**keep, "min_dimension": 100, "max_dimension": 1000}
    assert to_canvas(box, [[200, 300]], keep).tolist() == [[50.0, 75.0, 100.0, 150.0]]


# ---------------------------------------------------------------- the numbers


def test_zoo_config_at_128_px_on_14_to_44_px_objects_is_flagged_with_the_exact_unmatched_share(db, small, zoo):
    report = doctor.examine(zoo, small)
    coverage = finding(report, "anchor_coverage")
    boxes = database_boxes(db, small.project_id)  # 128-px images at a 128×128 input: pixels unchanged
    unmatched = int(np.sum(brute_force_best_iou(boxes, 128, 128, 4.0) < 0.5))
    assert coverage.numbers["boxes"] == len(boxes) == 82
    assert coverage.numbers["unmatched"] == unmatched == 23
    assert coverage.numbers["unmatched_share"] == round(23 / 82, 4)
    assert coverage.message.startswith("23 of 82 boxes (28.0%) have no anchor with IoU ≥ 0.5 at the 128×128 input")
    # A box of side s on a cell centre reaches 0.5 against the 32-px anchor from s = 22.6 px
    # (s² / 1024 ≥ 0.5): every box under 16 px is unmatched.
    assert coverage.numbers["by_size"]["8–16 px"] == {"boxes": 6, "unmatched": 6, "share": 1.0}
    assert coverage.severity == "warning"
    assert coverage.fix == {f"{doctor.ANCHORS}.anchor_scale": 2.25}
    # The zoo's matcher forces a match for every box, which the finding says (BENCHMARKS.md: with
    # batch norm fixed, the run learns at anchor_scale 4 too).
    assert coverage.message.endswith("force_match_for_each_row is on, so these boxes are still trained on, "
                                     "each against the one anchor that overlaps it best.")


def test_applying_the_coverage_fix_matches_over_95_percent_of_the_boxes(db, small, zoo):
    coverage = finding(doctor.examine(zoo, small), "anchor_coverage")
    fixed = doctor.apply_fix(zoo, coverage.fix)
    assert saved_configs.diff(zoo, fixed).count("\n+ ") == 1
    assert "+        anchor_scale: 2.25" in saved_configs.diff(zoo, fixed)
    matched = np.mean(brute_force_best_iou(database_boxes(db, small.project_id), 128, 128, 2.25) >= 0.5)
    assert matched == 81 / 82 > 0.95  # 98.8 %
    assert matched == pytest.approx(coverage.numbers["suggestions"][0]["matched_share"], abs=1e-4)
    assert not [f for f in doctor.examine(fixed, small).findings if f.check == "anchor_coverage"]


def test_800_of_2000_cosine_steps_is_flagged_with_the_learning_rate_left(small, zoo):
    schedule = finding(doctor.examine(zoo, small), "schedule")
    # The last update is step 799: after the 100 warmup steps, 699 of the 1900 cosine steps.
    expected = 0.5 * (1 + math.cos(math.pi * 699 / 1900))
    assert schedule.numbers["last_share_of_peak"] == round(expected, 4) == 0.7016
    assert schedule.numbers["peak_learning_rate"] == 0.08
    assert "70% of its peak 0.08" in schedule.message
    assert schedule.fix == {f"{COSINE}.total_steps": 800}
    fixed = doctor.apply_fix(zoo, schedule.fix)
    assert not [f for f in doctor.examine(fixed, small).findings if f.check == "schedule"]


@pytest.mark.parametrize("name,unmatched", [("quick", 1), ("default", 0)])
def test_the_cpu_templates_on_the_demo_project_pass_clean(db, admin, name, unmatched):
    project = demo.create_demo_project(db, admin)
    version = dataset_versions.create_export(db, admin, project["id"], "tfrecord")
    text = saved_configs.fill_from_dataset_version(saved_configs.templates()[name], version)
    report = doctor.examine(text, version)
    assert report.findings == []
    # 89 boxes; the quick template's anchor_scale 2 at 128 px matches all but one of them
    # (98.9 % ≥ 95 %), the default's anchor_scale 4 at 256 px every one.
    assert len(report.boxes) == 89 and sum(b["best_iou"] < 0.5 for b in report.boxes) == unmatched


def test_on_many_boxes_the_suggested_share_is_computed_on_every_box():
    # 6,000 boxes of 10–60 px on 640×640 images at the 128-px zoo config: ranked on a sample of
    # 4,000, reported on all 6,000.
    rng = np.random.default_rng(5)
    n = 6000
    centres, sides = rng.uniform(0.1, 0.9, (n, 2)), rng.uniform(10, 60, (n, 1)) / 640
    data = doctor.DatasetBoxes({1: "a"}, np.concatenate([centres - sides / 2, centres + sides / 2], axis=1),
                               np.ones(n, dtype=np.int64), np.arange(n) // 4, np.tile([640.0, 640.0], (n // 4, 1)),
                               np.array(["train"] * (n // 4), dtype=object))
    coverage = finding(doctor.examine(ZOO_128.read_text(), None, data=data), "anchor_coverage")
    for suggestion in coverage.numbers["suggestions"]:
        fixed = doctor._settings(doctor.pc.ConfigDocument(doctor.apply_fix(ZOO_128.read_text(), suggestion["fix"])))
        exact = np.mean(best_iou(doctor.to_canvas(data.boxes, data.image_hw[data.image], fixed.resizer), fixed.grid) >= 0.5)
        assert suggestion["matched_share"] == round(float(exact), 4)


@pytest.mark.skipif(not SHARED_ZOO.is_file(), reason="the shared TF OD API zoo configs are not beside the repository")
def test_the_fixture_is_the_zoo_recipe_at_128_px(small):
    zoo_text = saved_configs.fill_from_dataset_version(SHARED_ZOO.read_text(), small)
    ours = doctor._settings(doctor.pc.ConfigDocument(ZOO_128.read_text()))
    theirs = doctor._settings(doctor.pc.ConfigDocument(zoo_text))
    assert (theirs.grid.anchor_scale, theirs.grid.aspect_ratios, theirs.matched_threshold) == \
        (ours.grid.anchor_scale, ours.grid.aspect_ratios, ours.matched_threshold)
    assert theirs.resizer["height"] == 320 and ours.resizer == {"kind": "fixed_shape", "height": 128, "width": 128}


# ---------------------------------------------------------------- the other checks


def test_warmup_as_long_as_the_run_is_an_error(small, zoo):
    text = doctor.apply_fix(zoo, {f"{COSINE}.warmup_steps": 800})
    error = finding(doctor.examine(text, small), "schedule")
    assert error.severity == "error"
    assert error.message.startswith("warmup_steps (800) ≥ the run's 800 steps")
    # A run launched with 2000 steps is long enough for it; one launched for 500 steps (a trial
    # run, say) gets the same finding as a warning.
    assert not [f for f in doctor.examine(text, small, num_steps=2000).findings if f.check == "schedule"]
    trial = finding(doctor.examine(text, small, num_steps=500), "schedule")
    assert trial.severity == "warning"
    assert trial.message.startswith("warmup_steps (800) ≥ this run's 500 steps (set at launch)")


def test_schedule_fields_the_config_leaves_out_take_the_schemas_defaults_as_in_the_trainer(small, zoo):
    from backend.pipeline_schema import default
    doc = doctor.pc.ConfigDocument(zoo)
    doc.remove(f"{COSINE}.warmup_steps")
    doc.remove(f"{COSINE}.total_steps")
    assert (default(f"{COSINE}.warmup_steps"), default(f"{COSINE}.total_steps")) == (10000, 4000000)
    error = finding(doctor.examine(doc.text, small), "schedule")
    assert error.severity == "error"
    assert error.message.startswith("warmup_steps (10000) ≥ the run's 800 steps")
    assert error.fix == {f"{COSINE}.warmup_steps": 80, f"{COSINE}.total_steps": 800}


@pytest.mark.slow
def test_the_learning_rate_formulas_are_the_trainers():
    from backend.training.train import PipelineLearningRate
    schedules = [
        ("cosine", {"learning_rate_base": 0.08, "total_steps": 2000, "warmup_learning_rate": 0.026666,
                    "warmup_steps": 100, "hold_base_rate_steps": 50}),
        ("exponential", {"initial_learning_rate": 0.004, "decay_steps": 300, "decay_factor": 0.9,
                         "burnin_learning_rate": 0.001, "burnin_steps": 20}),
        ("manual_step", {"initial_learning_rate": 0.003, "warmup": True,
                         "schedule": [{"step": 100, "learning_rate": 0.002}, {"step": 900, "learning_rate": 0.0002}]}),
    ]
    for kind, params in schedules:
        trainer = PipelineLearningRate(kind, params)
        for step in (0, 10, 99, 100, 120, 149, 150, 151, 899, 900, 1999, 2000, 2001):
            assert doctor.learning_rate(kind, params, step) == pytest.approx(float(trainer(step)), rel=1e-5, abs=1e-7), (kind, step)


def test_batch_norm_moving_averages_left_at_their_start_by_a_short_run_are_flagged(small, zoo):
    # decay 0.997 over 800 steps: 0.997^800 = 0.0904 of the initial moving mean and variance left.
    bn = finding(doctor.examine(zoo, small), "batch_norm")
    assert bn.numbers == {"decay": 0.997, "num_steps": 800, "initial_share_left": round(0.997 ** 800, 4),
                          "suggested_decay": 0.994, "suggested_share_left": round(0.994 ** 800, 6)}
    assert bn.numbers["initial_share_left"] == 0.0904
    # 0.01^(1/800) = 0.99426…: 0.994 is the largest 3-decimal decay that leaves at most 1 %.
    assert 0.994 ** 800 <= 0.01 < 0.995 ** 800
    extractor = "model.ssd.feature_extractor.conv_hyperparams.batch_norm.decay"
    head = "model.ssd.box_predictor.weight_shared_convolutional_box_predictor.conv_hyperparams.batch_norm.decay"
    assert bn.fix == {extractor: 0.994, head: 0.994}
    assert bn.message.startswith("batch_norm decay 0.997 over the run's 800 steps leaves 9% of the moving mean "
                                 "and variance at their initial values (0.997^800)")
    fixed = doctor.apply_fix(zoo, bn.fix)
    assert saved_configs.diff(zoo, fixed).count("\n+ ") == 2
    assert not [f for f in doctor.examine(fixed, small).findings if f.check == "batch_norm"]
    # 500 steps want 0.99 (0.99^500 = 0.66 %); frozen batch norm keeps no moving averages to fix.
    short = finding(doctor.examine(doctor.apply_fix(zoo, {"train_config.num_steps": 500}), small), "batch_norm")
    assert short.fix == {extractor: 0.99, head: 0.99} and short.numbers["initial_share_left"] == 0.2226
    frozen = doctor.apply_fix(zoo, {"model.ssd.freeze_batchnorm": True})
    assert not [f for f in doctor.examine(frozen, small).findings if f.check == "batch_norm"]


def test_batch_larger_than_the_training_split_and_too_few_epochs(small, zoo):
    train = small_train_images = doctor.dataset_boxes(small).images_in("train")
    assert small_train_images == 33
    text = doctor.apply_fix(zoo, {"train_config.batch_size": 64, "train_config.num_steps": 4, f"{COSINE}.warmup_steps": 0})
    report = doctor.examine(text, small)
    batch, epochs = finding(report, "batch"), finding(report, "epochs")
    assert batch.fix == {"train_config.batch_size": 32}
    assert epochs.numbers["epochs"] == round(4 * 64 / train, 2) == 7.76
    assert epochs.fix == {"train_config.num_steps": math.ceil(10 * 33 / 64), f"{COSINE}.total_steps": 6}
    many = finding(doctor.examine(doctor.apply_fix(zoo, {"train_config.num_steps": 3000,
                                                          f"{COSINE}.total_steps": 3000}), small), "epochs")
    assert many.numbers["epochs"] == round(3000 * 16 / 33, 2) and many.fix["train_config.num_steps"] == 2062


def test_classes_without_or_with_few_training_boxes(db, admin, zoo):
    version = shapes_version(db, admin, "three", classes=("circle", "square", "bird"), count=6)
    report = doctor.examine(saved_configs.fill_from_dataset_version(ZOO_128.read_text(), version), version)
    messages = [f.message for f in report.findings if f.check == "classes"]
    assert messages[0].startswith("no boxes of bird in the training split")
    counts = doctor.dataset_boxes(version)
    train = counts.split == "train"
    few = {name: int(np.sum(train & (counts.labels == cid))) for cid, name in counts.classes.items()
           if 0 < np.sum(train & (counts.labels == cid)) < 10}
    assert few and messages[1] == ("fewer than 10 training boxes of " + ", ".join(f"{n} ({k})" for n, k in few.items())
                                   + ": too few to learn reliably. Label more of them.")


def test_objects_the_resizer_makes_too_small_and_shapes_no_anchor_matches():
    # Two 640×640 images at the quick template's 128×128 input: everything is divided by 5.
    data = doctor.DatasetBoxes(
        classes={1: "pole"},
        boxes=np.array([[0.125, 0.125, 0.171875, 0.25],    # 30×80 px → 6×16: under 8 px
                        [0.25, 0.25, 0.5, 0.5],            # 160×160 → 32×32
                        [0.5, 0.0625, 0.546875, 0.9375],   # 30×560 → 6×112: small, and 56:3 wide
                        [0.5, 0.5, 0.75, 0.75]]),
        labels=np.array([1, 1, 1, 1]), image=np.array([0, 0, 1, 1]),
        image_hw=np.array([[640.0, 640.0], [640.0, 640.0]]), image_split=np.array(["train", "train"], dtype=object))
    report = doctor.examine(saved_configs.templates()["quick"], None, data=data)
    small_objects = finding(report, "small_objects")
    assert small_objects.numbers["small"] == 2 and small_objects.numbers["smallest_px"] == 6.0
    # 8 / 6 px = 1.33 × 128 = 170.7 → 192 (multiples of 32), where the 6-px sides become 9 px.
    assert small_objects.fix == {f"{doctor.FIXED}.height": 192, f"{doctor.FIXED}.width": 192}
    assert small_objects.numbers["after_fix_share"] == 0.0
    ratios = finding(report, "aspect_ratios")
    # Within 2.25× of 0.5, 1 or 2 at IoU 0.5: 16/6 = 2.67 is, 112/6 = 18.67 is not.
    assert ratios.numbers["outside"] == 1 and ratios.numbers["ratio_tolerance"] == 2.25
    assert ratios.fix == {f"{doctor.ANCHORS}.aspect_ratios": [1.0, 2.0, 0.5, 18.67]}
    assert ratios.numbers["after_fix_share"] == 0.0


def test_a_crop_that_cuts_away_most_small_objects_is_flagged_and_its_fix_holds(small):
    quick = saved_configs.fill_from_dataset_version(saved_configs.templates()["quick"], small)
    crop = "train_config.data_augmentation_options[1].random_crop_image"
    assert not [f for f in doctor.examine(quick, small).findings if f.check == "augmentation"]
    text = doctor.apply_fix(quick, {f"{crop}.min_area": 0.1})
    augmentation = finding(doctor.examine(text, small), "augmentation")
    assert augmentation.numbers["smallest_cut_share"] > 0.5
    assert augmentation.fix == {f"{crop}.min_object_covered": 0.5}  # the first of 0.1, 0.3, 0.5 that holds
    fixed = doctor.apply_fix(text, augmentation.fix)
    assert not [f for f in doctor.examine(fixed, small).findings if f.check == "augmentation"]


def test_crop_windows_by_hand_follow_the_kernels_integer_sizes():
    rng = np.random.default_rng(0)
    box = np.array([[0.0, 0.0, 1.0, 1.0]])
    # 10×10, ratio 1, area exactly 0.5: height round(√50) = 7 gives 49 < 50, 8 gives 64 > 50, so
    # every attempt fails and the window is the whole image.
    windows = doctor.crop_windows(10, 10, box, 0.0, (1.0, 1.0), (0.5, 0.5), rng, 50)
    assert windows.tolist() == [[0.0, 0.0, 10.0, 10.0]] * 50
    # Area 0.49: 7×7 = 49 fits; the corner is uniform over 0, 1, 2 (10 − 7 positions) on each axis.
    windows = doctor.crop_windows(10, 10, box, 0.0, (1.0, 1.0), (0.49, 0.49), rng, 3000)
    assert set(map(tuple, (windows[:, 2:] - windows[:, :2]).tolist())) == {(7.0, 7.0)}
    assert set(windows[:, 0].tolist()) == set(windows[:, 1].tolist()) == {0.0, 1.0, 2.0}
    # A box the window must cover entirely (min_object_covered 1): a 3×3 box at rows/columns 0–3
    # (0.3 × 10, truncated) is covered only by the window in the corner.
    corner = doctor.crop_windows(10, 10, np.array([[0.0, 0.0, 0.3, 0.3]]), 1.0, (1.0, 1.0), (0.49, 0.49), rng, 200)
    assert corner.tolist() == [[0.0, 0.0, 7.0, 7.0]] * 200


@pytest.mark.slow
def test_crop_windows_draw_what_tensorflows_sample_distorted_bounding_box_draws():
    # The same image, box and settings drawn 6,000 times by TensorFlow's op (seeded, stateless)
    # and by `crop_windows`: the window heights and widths take the same integer values with the
    # same frequencies (total variation distance under 0.08: between two numpy seeds it is
    # 0.04–0.05 at 6,000 draws, measured), the same means, and whole-image fallbacks as rare.
    import tensorflow as tf
    height, width, n = 60, 80, 6000
    box = np.array([[0.1, 0.1, 0.3, 0.4]], dtype=np.float32)
    settings = dict(min_object_covered=0.5, aspect_ratio_range=(0.75, 3.0), area_range=(0.3, 1.0))

    @tf.function
    def draw(seeds):
        return tf.map_fn(lambda s: tf.concat(tf.image.stateless_sample_distorted_bounding_box(
            [height, width, 3], box[None], seed=s, max_attempts=100, use_image_if_no_bounding_boxes=True,
            **settings)[:2], axis=0), seeds, fn_output_signature=tf.int32)

    theirs = draw(tf.stack([tf.range(n), tf.range(n) * 7 + 1], axis=1)).numpy()
    theirs = np.stack([theirs[:, 0], theirs[:, 1], theirs[:, 0] + theirs[:, 3], theirs[:, 1] + theirs[:, 4]], axis=1)
    ours = doctor.crop_windows(height, width, box, settings["min_object_covered"], settings["aspect_ratio_range"],
                               settings["area_range"], np.random.default_rng(4), n)

    def shares(values, support):
        return np.array([np.mean(values == v) for v in support])
    for axis in (0, 1):
        sizes_t, sizes_o = theirs[:, axis + 2] - theirs[:, axis], ours[:, axis + 2] - ours[:, axis]
        support = sorted(set(sizes_t.tolist()) | set(sizes_o.tolist()))
        assert set(sizes_o.tolist()) <= set(sizes_t.tolist()) | {height, width}
        assert 0.5 * np.abs(shares(sizes_t, support) - shares(sizes_o, support)).sum() < 0.08
        assert abs(sizes_t.mean() - sizes_o.mean()) < 0.6  # a few standard errors of the mean
    def whole(w):
        return np.mean(np.all(w == [0, 0, height, width], axis=1))
    assert abs(whole(theirs) - whole(ours)) < 0.02
    # Every window covers at least half of the box: rows 6–18, columns 8–32 (12 × 24 px).
    def covered(w):
        dy = np.clip(np.minimum(w[:, 2], 18) - np.maximum(w[:, 0], 6), 0, None)
        dx = np.clip(np.minimum(w[:, 3], 32) - np.maximum(w[:, 1], 8), 0, None)
        return dy * dx / (12 * 24)
    assert covered(theirs).min() >= 0.5 and covered(ours).min() >= 0.5


# ---------------------------------------------------------------- where it is shown


def test_config_check_prints_the_findings_and_json(small, zoo, tmp_path, capsys):
    from backend.__main__ import main
    path = tmp_path / "pipeline.config"
    path.write_text(zoo)
    assert main(["config", "check", str(path), "--dataset-version", str(small.id)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"{path}: warning [anchor_coverage]: 23 of 82 boxes (28.0%) have no anchor" in "\n".join(out)
    assert f"  fix: {doctor.ANCHORS}.anchor_scale = 2.25" in out and out[-1] == f"{path}: ok"
    assert main(["config", "check", str(path), "--dataset-version", str(small.id), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["problems"] == []
    assert [f["check"] for f in printed["findings"]] == ["schedule", "batch_norm", "anchor_coverage"]
    assert printed["findings"][2]["numbers"]["unmatched"] == 23
    path.write_text(doctor.apply_fix(zoo, {f"{COSINE}.warmup_steps": 900}))
    assert main(["config", "check", str(path), "--dataset-version", str(small.id)]) == 1
    assert "error [schedule]: warmup_steps (900)" in capsys.readouterr().out


def test_a_run_launch_refuses_doctor_errors_and_keeps_its_warnings(db, admin, small, zoo, trainer):
    broken = saved_configs.save_config(db, admin, small.project_id, "zoo", doctor.apply_fix(zoo, {f"{COSINE}.warmup_steps": 900}))
    with pytest.raises(Invalid, match="the config doctor refuses the run on dataset version"):
        run_lifecycle.start_run(db, admin, small.project_id, export_id=small.id, config_id=broken["id"],
                       runner=trainer)
    assert run_lifecycle.list_runs(db, small.project_id) == []
    config = saved_configs.save_config(db, admin, small.project_id, "zoo", zoo)
    run = run_lifecycle.start_run(db, admin, small.project_id, export_id=small.id, config_id=config["id"],
                         runner=trainer)
    warnings = run_views.doctor_warnings(run_lifecycle.get_run(db, run["id"]))
    assert [w["check"] for w in warnings] == ["schedule", "batch_norm", "anchor_coverage"]
    assert warnings[2]["numbers"]["unmatched"] == 23
    at = signed_in(db, "admin", "pages/runs.py")  # the run's view shows them
    shown = [w.value for w in at.warning if w.value.startswith("Config doctor at launch: ")]
    from pages.common import plain  # (Markdown source: the messages as plain text, `_` escaped)
    assert [m.removeprefix("Config doctor at launch: ") for m in shown] == [plain(w["message"]) for w in warnings]
    run_lifecycle.cancel_run(db, admin, run["id"])
    run_lifecycle.wait_for_run(db, run["id"])


def test_doctor_panel_lists_findings_with_charts_and_fix_it_edits_the_config(db, users, small, zoo):
    saved_configs.save_config(db, users["reviewer"], small.project_id, "zoo", zoo)
    at = signed_in(db, "reviewer", "pages/config.py")
    assert any(s.value == "Doctor" for s in at.subheader)
    messages = [w.value for w in at.warning]
    assert any(m.startswith("23 of 82 boxes (28.0%) have no anchor") for m in messages)
    assert any("70% of its peak" in m for m in messages)
    assert any(m.startswith("batch\\_norm decay 0.997 over the run's 800 steps leaves 9%") for m in messages)
    assert len(at.get("vega_lite_chart")) == 2
    fixes = [b for b in at.button if b.label == "Fix it"]
    assert len(fixes) == 3
    fixes[2].click().run()  # the anchor coverage finding comes last, after the schedule's and batch norm's
    assert not at.exception, at.exception
    assert "+        anchor_scale: 2.25" in at.code[0].value
    assert not any("have no anchor" in w.value for w in at.warning)
    [b for b in at.button if b.label == "Fix it"][1].click().run()  # batch norm's, still second
    assert not at.exception, at.exception
    diff_lines = at.code[0].value.splitlines()
    assert "+          decay: 0.994" in diff_lines and "+            decay: 0.994" in diff_lines  # extractor, head
    assert not any(w.value.startswith("batch\\_norm decay") for w in at.warning)  # (Markdown source)
    button(at, "Save as a new version").click().run()
    saved = saved_configs.list_configs(db, small.project_id)[0]
    assert saved["version"] == 2 and "anchor_scale: 2.25" in saved["text"]
    assert saved["text"].count("decay: 0.994\n") == 2 and "decay: 0.997" not in saved["text"]
