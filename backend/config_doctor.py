"""The config doctor: checks a pipeline.config against a dataset version's boxes before a run.

A config can pass `config_check.check` and still not train on a dataset: anchors that no box
reaches at IoU 0.5, a schedule that stops at 80 % of its peak learning rate, 3 epochs of data.
`examine(text, version)` returns a `Report` of `Finding`s, each with its figures and, where a
config change helps, the values that would fix it (`Finding.fix`, config path → value, applied
by `apply_fix` as an ordinary edit). A finding is an `error` only where training cannot work
(a warmup as long as the config's num_steps; for a run whose length is set at launch, such as a
3-step trial, it is a warning); everything else is a `warning`. The Configs page, `config check
FILE --dataset-version N [--json]` and `run_lifecycle.start_run` all call `examine`.

What is checked (numbers are the module's constants):

- anchor coverage: every box of the version (all splits), resized as the config's resizer
  does, against the config's anchors (`anchor_coverage.best_iou`); boxes whose best IoU is
  below the matcher's `matched_threshold`, by class and size, and the `anchor_scale`, input
  size or `max_level` that would match `COVERAGE_TARGET` of them, found by computing each
  candidate;
- boxes under `MIN_OBJECT_PX` on their short side at the model input, and box shapes no
  anchor aspect ratio can match;
- the learning-rate schedule over the run's steps (the trainer's formulas, in plain Python);
- batch norm's `decay` against the run's steps: the share `decay ** steps` of the moving
  statistics (what evaluation and export normalize with) still at their initial values;
- batch size against the training split, and the epochs the run makes of it;
- classes with no or few training boxes, and splits missing a class;
- `random_crop_image` windows that cut away most of the boxes of an image, drawn as
  `tf.image.sample_distorted_bounding_box`'s kernel draws them, with the option's own
  settings, on the version's boxes (`crop_windows`).

Numpy only: no TensorFlow or Keras import (boxes are read with `formats.tfrecord`).
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend import config_document as pc, pipeline_schema
from backend.anchor_coverage import AnchorGrid, best_iou, ratio_tolerance, shape_unmatchable, to_canvas
from backend.dataset_versions import DatasetVersion
from backend.formats import label_map
from backend.errors import Invalid, NotFound
from backend.training.schedules import LEARNING_RATE_DEFAULTS, SCHEDULE_MESSAGES, learning_rate_at, manual_steps

COVERAGE_TARGET = 0.95        # share of boxes that should reach the matched threshold
MIN_OBJECT_PX = 8             # shorter side at the model input below which a box is too small
MIN_SHARE = 0.01              # small-object and aspect-ratio findings start at 1 % of the boxes
LR_END_LIMIT = 0.10           # the last step's learning rate, as a share of the peak
BN_LEFT_LIMIT = 0.01          # share of the initial moving statistics batch norm may keep at the end
MIN_EPOCHS, MAX_EPOCHS = 10, 1000
MIN_CLASS_BOXES = 10
CROP_LOSS_LIMIT = 0.5         # share of boxes the smallest crop windows may cut to under half
SIZE_EDGES = (8, 16, 32, 64, 128)
ANCHOR_SCALES = tuple(x / 4 for x in range(2, 33))          # 0.5, 0.75, ..., 8.0
INPUT_FACTORS = (1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
MAX_INPUT = 1024
MAX_LEVELS = (5, 6, 7)        # what the FPN-lite head supports (config_check.check);
                              # min_level must be 3, so it is not a candidate
CROP_SAMPLES, CROP_IMAGES = 16, 400
SEARCH_BOXES = 4000           # candidates are ranked on at most this many boxes (a fixed sample);
                              # the shares reported for the chosen ones are computed on all boxes
COMBINED_SCALES = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # with an input size, when nothing alone does

_SSD = "model.ssd"
ANCHORS = f"{_SSD}.anchor_generator.multiscale_anchor_generator"
FIXED = f"{_SSD}.image_resizer.fixed_shape_resizer"
KEEP = f"{_SSD}.image_resizer.keep_aspect_ratio_resizer"
MATCHER = f"{_SSD}.matcher.argmax_matcher"
_OPTIMIZERS = ("momentum_optimizer", "adam_optimizer", "rms_prop_optimizer")
_SCHEDULES = {message: kind for kind, message in SCHEDULE_MESSAGES.items()}  # message name → kind
_CROP_DEFAULTS = pipeline_schema.defaults("train_config.data_augmentation_options.random_crop_image")


@dataclass(frozen=True)
class Finding:
    """One thing the doctor found: `check` names the rule, `numbers` holds its figures and
    `fix` the config values (path → value) that would resolve it ({} when the remedy is data)."""
    check: str
    severity: str               # "warning" | "error"
    message: str
    numbers: dict[str, Any] = field(default_factory=dict)
    fix: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        text = f"{self.severity} [{self.check}]: {self.message}"
        if self.fix:
            text += "\n  fix: " + ", ".join(f"{path} = {pc.format_scalar(v)}" for path, v in self.fix.items())
        return text


@dataclass
class Report:
    """The findings and what the charts need: one row per box (class, split, size and best
    IoU at the model input) and one per anchor shape."""
    findings: list[Finding]
    boxes: list[dict] = field(default_factory=list)
    anchors: list[dict] = field(default_factory=list)
    matched_threshold: float = 0.5

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def to_json(self) -> list[dict]:
        return [asdict(f) for f in self.findings]


# ---------------------------------------------------------------- the config's settings


@dataclass(frozen=True)
class _Settings:
    resizer: dict[str, Any] | None      # kind, height, width, min_dimension, max_dimension
    grid: AnchorGrid | None             # None: not an SSD with multiscale anchors
    matched_threshold: float
    batch_size: int
    num_steps: int
    schedule: tuple[str, dict[str, Any], str] | None   # (kind, params, config path)
    crops: tuple[tuple[int, dict[str, Any]], ...]      # (data_augmentation_options index, params)
    batch_norms: tuple[tuple[str, float], ...] = ()    # (batch_norm path, decay) of each conv_hyperparams
    force_match: bool = False                          # argmax_matcher.force_match_for_each_row
    num_classes: int | None = None                     # model.ssd.num_classes


def _number(doc: pc.ConfigDocument, path: str, kind: type = float) -> Any:
    """A numeric field as `kind`, or the schema's default (the TF OD API's, as the trainer reads
    it) when absent or not a number (the validator reports those)."""
    default = pipeline_schema.default(path)
    value = doc.get_or(path, default)
    return kind(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else kind(default)


def _settings(doc: pc.ConfigDocument) -> _Settings:
    """What the doctor reads, with the schema's defaults (as `training.training_config` has them)."""
    ssd = doc.get_or(_SSD)
    resizer = grid = None
    if isinstance(ssd, pc.Message):
        if isinstance(doc.get_or(KEEP), pc.Message):
            big = _number(doc, f"{KEEP}.max_dimension", int)
            resizer = {"kind": "keep_aspect_ratio", "height": big, "width": big,
                       "min_dimension": _number(doc, f"{KEEP}.min_dimension", int), "max_dimension": big}
        else:
            resizer = {"kind": "fixed_shape", "height": _number(doc, f"{FIXED}.height", int),
                       "width": _number(doc, f"{FIXED}.width", int)}
        generator = doc.get_or(f"{_SSD}.anchor_generator")
        if not isinstance(generator, pc.Message) or generator.has("multiscale_anchor_generator"):
            ratios = doc.get_all(f"{ANCHORS}.aspect_ratios")
            ratios = [r for v in ratios for r in (v if isinstance(v, list) else [v])]
            grid = AnchorGrid(resizer["height"], resizer["width"],
                              min_level=_number(doc, f"{ANCHORS}.min_level", int),
                              max_level=_number(doc, f"{ANCHORS}.max_level", int),
                              anchor_scale=_number(doc, f"{ANCHORS}.anchor_scale"),
                              aspect_ratios=tuple(float(r) for r in ratios if isinstance(r, (int, float)))
                              or AnchorGrid.aspect_ratios,
                              scales_per_octave=_number(doc, f"{ANCHORS}.scales_per_octave", int))
        matched = _number(doc, f"{MATCHER}.matched_threshold")
        if min(resizer["height"], resizer["width"], resizer.get("min_dimension", 1)) < 1:
            resizer = grid = None  # sizes the validator refuses: nothing to measure against
        elif grid is not None and (grid.anchor_scale <= 0 or grid.scales_per_octave < 1 or not 0 < matched <= 1
                                   or grid.min_level > grid.max_level or min(grid.aspect_ratios) <= 0):
            grid = None
    schedule = None
    for optimizer in _OPTIMIZERS:
        lr = doc.get_or(f"train_config.optimizer.{optimizer}.learning_rate")
        if isinstance(lr, pc.Message) and lr.fields and lr.fields[0].name in _SCHEDULES:
            first = lr.fields[0]
            kind = _SCHEDULES[first.name]
            # The schema's defaults where the text is silent, as the trainer fills them.
            params = {**LEARNING_RATE_DEFAULTS[kind],
                      **(first.value.to_python() if isinstance(first.value, pc.Message) else {})}
            if first.name == "manual_step_learning_rate":
                params["schedule"] = [s.to_python() for s in first.value.all("schedule")]
            schedule = (kind, params,
                        f"train_config.optimizer.{optimizer}.learning_rate.{first.name}")
    crops = []
    for index, option in enumerate(doc.get_all("train_config.data_augmentation_options")):
        if isinstance(option, pc.Message) and isinstance(option.one("random_crop_image"), pc.Message):
            crops.append((index, option.one("random_crop_image").to_python()))
    norms = []
    if isinstance(ssd, pc.Message) and doc.get_or(f"{_SSD}.freeze_batchnorm") is not True:
        for path, f in pc.walk(ssd, _SSD):
            if path.endswith("conv_hyperparams.batch_norm") and isinstance(f.value, pc.Message):
                norms.append((path, _number(doc, f"{path}.decay")))
    num_classes = doc.get_or(f"{_SSD}.num_classes")
    return _Settings(resizer, grid, _number(doc, f"{MATCHER}.matched_threshold"),
                     _number(doc, "train_config.batch_size", int), _number(doc, "train_config.num_steps", int),
                     schedule, tuple(crops), tuple(norms), doc.get_or(f"{MATCHER}.force_match_for_each_row") is True,
                     num_classes if isinstance(num_classes, int) and not isinstance(num_classes, bool) else None)


def learning_rate(kind: str, params: dict[str, Any], step: float) -> float:
    """The learning rate at optimizer step `step`: the trainer's schedules with `optimizer.proto`'s
    defaults (`backend.training.schedules`, TensorFlow-free)."""
    return learning_rate_at(kind, params, step)


# ---------------------------------------------------------------- the dataset's boxes


@dataclass(frozen=True)
class DatasetBoxes:
    """Every box of a dataset version as the trainer reads it from the shards.

    Per box: `boxes` `[N, 4]` normalised yxyx, `labels` `[N]` label-map ids, `image` `[N]`
    index into the per-image arrays `image_hw` `[I, 2]` (height, width) and `image_split` `[I]`."""
    classes: dict[int, str]
    boxes: np.ndarray
    labels: np.ndarray
    image: np.ndarray
    image_hw: np.ndarray
    image_split: np.ndarray

    @property
    def split(self) -> np.ndarray:
        return self.image_split[self.image] if len(self.image) else np.zeros(0, dtype=object)

    def images_in(self, split: str) -> int:
        return int(np.sum(self.image_split == split))


def dataset_boxes(version: DatasetVersion) -> DatasetBoxes:
    """The boxes of every split of `version` (read once per set of shard files and sizes)."""
    files = []
    for split, pattern in sorted(version.shard_globs.items()):
        for path in sorted(Path(pattern).parent.glob(Path(pattern).name)):
            stat = path.stat()
            files.append((split, str(path), stat.st_size, stat.st_mtime_ns))
    try:
        classes = {item.id: item.name for item in label_map.read(version.label_map_path).items}
    except (NotFound, Invalid):
        classes = {}
    return _read_boxes(tuple(files), tuple(sorted(classes.items())))


@functools.lru_cache(maxsize=8)
def _read_boxes(files: tuple[tuple[str, str, int, int], ...], classes: tuple[tuple[int, str], ...]) -> DatasetBoxes:
    from backend.formats import tfrecord, tfrecord_framing

    boxes, labels, image, image_hw, image_split = [], [], [], [], []
    for split, path, _, _ in files:
        for _, _, example in tfrecord.iter_examples(path):
            if isinstance(example, tfrecord_framing.RecordError):
                continue  # unreadable records are the TFRecord browser's report
            index = len(image_hw)
            image_hw.append((example.height or 0, example.width or 0))
            image_split.append(split)
            for box in example.boxes():
                boxes.append((box["ymin"], box["xmin"], box["ymax"], box["xmax"]))
                labels.append(int(box["label"] or 0))
                image.append(index)
    return DatasetBoxes(dict(classes), np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                        np.asarray(labels, dtype=np.int64), np.asarray(image, dtype=np.int64),
                        np.asarray(image_hw, dtype=np.float64).reshape(-1, 2), np.asarray(image_split, dtype=object))


# ---------------------------------------------------------------- anchors


def _size_bucket(size: float) -> str:
    edges = SIZE_EDGES
    if size < edges[0]:
        return f"< {edges[0]} px"
    for lo, hi in zip(edges, edges[1:]):
        if size < hi:
            return f"{lo}–{hi} px"
    return f"≥ {edges[-1]} px"


def _canvas_boxes(data: DatasetBoxes, resizer: dict) -> np.ndarray:
    return to_canvas(data.boxes, data.image_hw[data.image] if len(data.image) else np.zeros((0, 2)), resizer)


def _matched_share(data: DatasetBoxes, resizer: dict, grid: AnchorGrid, threshold: float) -> float:
    return float(np.mean(best_iou(_canvas_boxes(data, resizer), grid) >= threshold))


def _resized(resizer: dict, grid: AnchorGrid, factor: float) -> tuple[dict, AnchorGrid, dict]:
    """Resizer and grid with the input size scaled by `factor` (multiples of 32), and the fix."""
    def scaled(v: int) -> int:
        return int(min(MAX_INPUT, max(32, math.ceil(v * factor / 32) * 32)))
    if resizer["kind"] == "fixed_shape":
        new = {**resizer, "height": scaled(resizer["height"]), "width": scaled(resizer["width"])}
        fix = {f"{FIXED}.height": new["height"], f"{FIXED}.width": new["width"]}
    else:
        big = scaled(resizer["max_dimension"])
        new = {**resizer, "height": big, "width": big, "max_dimension": big,
               "min_dimension": int(round(resizer["min_dimension"] * big / resizer["max_dimension"]))}
        fix = {f"{KEEP}.min_dimension": new["min_dimension"], f"{KEEP}.max_dimension": big}
    return new, _replace_grid(grid, height=new["height"], width=new["width"]), fix


def _replace_grid(grid: AnchorGrid, **changes) -> AnchorGrid:
    values = {**asdict(grid), **changes}
    values["aspect_ratios"] = tuple(values["aspect_ratios"])
    return AnchorGrid(**values)


def coverage_suggestions(data: DatasetBoxes, resizer: dict, grid: AnchorGrid, threshold: float) -> list[dict]:
    """Config changes that would bring the matched share to `COVERAGE_TARGET`, best first:
    `[{"fix": {path: value}, "matched_share": s, "change": "anchor_scale 4.0 → 2.0"}]`.

    One change at a time is tried first: every `ANCHOR_SCALES` value, the input size times each
    of `INPUT_FACTORS`, each supported `max_level`; then input sizes with `COMBINED_SCALES`.
    Among candidates reaching the target, anchor_scale comes first (it keeps the compute
    cost), then input size, then levels; within one kind the highest share wins, ties going to
    the value nearest the current one. When nothing reaches it, the best candidate is given.
    Candidates are ranked on a fixed sample of `SEARCH_BOXES` boxes; each one returned has its
    share computed on every box.
    """
    sample = data
    if len(data.boxes) > SEARCH_BOXES:
        keep = np.sort(np.random.default_rng(0).choice(len(data.boxes), SEARCH_BOXES, replace=False))
        sample = DatasetBoxes(data.classes, data.boxes[keep], data.labels[keep], data.image[keep],
                              data.image_hw, data.image_split)
    candidates = []  # (kind, distance from now, share on the sample, fix, change, resizer, grid)

    def add(kind: int, distance: float, fix: dict, change: str, new_resizer: dict, new_grid: AnchorGrid) -> None:
        share = _matched_share(sample, new_resizer, new_grid, threshold)
        candidates.append((kind, distance, share, fix, change, new_resizer, new_grid))

    for scale in ANCHOR_SCALES:
        if scale != grid.anchor_scale:
            add(0, abs(math.log(scale / grid.anchor_scale)), {f"{ANCHORS}.anchor_scale": scale},
                f"anchor_scale {grid.anchor_scale:g} → {scale:g}", resizer, _replace_grid(grid, anchor_scale=scale))
    sized = []
    for factor in INPUT_FACTORS:
        new_resizer, new_grid, fix = _resized(resizer, grid, factor)
        if (new_resizer["height"], new_resizer["width"]) != (resizer["height"], resizer["width"]):
            sized.append((new_resizer, new_grid, fix))
            add(1, factor, fix, f"input {resizer['height']}×{resizer['width']} → "
                f"{new_resizer['height']}×{new_resizer['width']}", new_resizer, new_grid)
    for level in MAX_LEVELS:
        if level != grid.max_level:
            add(2, abs(level - grid.max_level),
                {f"{ANCHORS}.max_level": level, f"{_SSD}.feature_extractor.fpn.max_level": level},
                f"max_level {grid.max_level} → {level}", resizer, _replace_grid(grid, max_level=level))
    if not any(c[2] >= COVERAGE_TARGET for c in candidates):
        for new_resizer, new_grid, fix in sized:
            for scale in COMBINED_SCALES:
                add(3, abs(math.log(scale / grid.anchor_scale)), {**fix, f"{ANCHORS}.anchor_scale": scale},
                    f"input {new_resizer['height']}×{new_resizer['width']} and anchor_scale {scale:g}",
                    new_resizer, _replace_grid(new_grid, anchor_scale=scale))
    reaching = [c for c in candidates if c[2] >= COVERAGE_TARGET]
    if reaching:
        best_per_kind: dict[int, tuple] = {}
        for c in sorted(reaching, key=lambda c: (c[0], -round(c[2], 3), c[1])):
            best_per_kind.setdefault(c[0], c)
        chosen = list(best_per_kind.values())
    else:
        chosen = sorted(candidates, key=lambda c: (-round(c[2], 3), c[0], c[1]))[:1]
    return [{"fix": c[3], "change": c[4], "matched_share": round(
        c[2] if sample is data else _matched_share(data, c[5], c[6], threshold), 4)} for c in chosen]


def _coverage_findings(data: DatasetBoxes, s: _Settings, report: Report) -> list[Finding]:
    if s.grid is None or s.resizer is None or not len(data.boxes):
        return []
    canvas = _canvas_boxes(data, s.resizer)
    ious = best_iou(canvas, s.grid)
    sizes = np.sqrt(np.clip(canvas[:, 2] - canvas[:, 0], 0, None) * np.clip(canvas[:, 3] - canvas[:, 1], 0, None))
    names = np.array([data.classes.get(int(i), str(int(i))) for i in data.labels], dtype=object)
    buckets = np.array([_size_bucket(v) for v in sizes], dtype=object)
    split = data.split
    report.boxes = [{"class": names[i], "split": split[i], "size": round(float(sizes[i]), 2),
                     "best_iou": round(float(ious[i]), 4), "size_bucket": buckets[i]} for i in range(len(ious))]
    report.anchors = s.grid.anchor_sizes()
    findings = []
    unmatched = ious < s.matched_threshold
    share = float(np.mean(unmatched))
    if share > 1 - COVERAGE_TARGET:
        def breakdown(keys: np.ndarray, order: list) -> dict:
            return {k: {"boxes": int(np.sum(keys == k)), "unmatched": int(np.sum(unmatched & (keys == k))),
                        "share": round(float(np.mean(unmatched[keys == k])), 4)} for k in order if np.any(keys == k)}
        by_class = breakdown(names, sorted(set(names)))
        by_size = breakdown(buckets, [_size_bucket(e - 0.5) for e in SIZE_EDGES] + [_size_bucket(SIZE_EDGES[-1])])
        suggestions = coverage_suggestions(data, s.resizer, s.grid, s.matched_threshold)
        smallest = min(r["size"] for r in report.anchors)
        g = s.grid
        text = (f"{int(unmatched.sum())} of {len(ious)} boxes ({share:.1%}) have no anchor with IoU ≥ "
                f"{s.matched_threshold:g} at the {g.height}×{g.width} input: the smallest anchors are "
                f"{smallest:.0f} px (anchor_scale {g.anchor_scale:g} × 2^{g.min_level}). Unmatched by size: "
                + ", ".join(f"{k} {v['share']:.0%} ({v['unmatched']}/{v['boxes']})" for k, v in by_size.items())
                + "; by class: " + ", ".join(f"{k} {v['share']:.0%}" for k, v in by_class.items()) + ". ")
        best = suggestions[0]
        reaches = "would match" if best["matched_share"] >= COVERAGE_TARGET else "would match only"
        text += f"Suggested: {best['change']} ({reaches} {best['matched_share']:.1%})"
        if len(suggestions) > 1:
            text += "; or " + "; or ".join(f"{x['change']} ({x['matched_share']:.1%})" for x in suggestions[1:])
        if s.force_match:
            text += (". force_match_for_each_row is on, so these boxes are still trained on, each against "
                     "the one anchor that overlaps it best")
        findings.append(Finding("anchor_coverage", "warning", text + ".", {
            "boxes": len(ious), "unmatched": int(unmatched.sum()), "unmatched_share": round(share, 4),
            "matched_threshold": s.matched_threshold, "by_class": by_class, "by_size": by_size,
            "suggestions": suggestions}, best["fix"]))
    findings += _small_object_findings(canvas, s)
    findings += _aspect_findings(canvas, s)
    return findings


def _small_object_findings(canvas: np.ndarray, s: _Settings) -> list[Finding]:
    short = np.minimum(canvas[:, 2] - canvas[:, 0], canvas[:, 3] - canvas[:, 1])
    small = short < MIN_OBJECT_PX
    if np.mean(small) < MIN_SHARE:
        return []
    factor = MIN_OBJECT_PX / max(float(np.quantile(short, 1 - COVERAGE_TARGET)), 1e-6)
    new_resizer, _, fix = _resized(s.resizer, s.grid, factor)
    still = float(np.mean(short * new_resizer["height"] / s.resizer["height"] < MIN_OBJECT_PX))
    return [Finding("small_objects", "warning",
                    f"{int(small.sum())} of {len(short)} boxes ({np.mean(small):.1%}) are under {MIN_OBJECT_PX} px "
                    f"on their shorter side at the {s.resizer['height']}×{s.resizer['width']} input (smallest "
                    f"{short.min():.1f} px): too few pixels to detect. Suggested: input {new_resizer['height']}×"
                    f"{new_resizer['width']} ({still:.1%} would stay under {MIN_OBJECT_PX} px).",
                    {"boxes": len(short), "small": int(small.sum()), "small_share": round(float(np.mean(small)), 4),
                     "smallest_px": round(float(short.min()), 2), "after_fix_share": round(still, 4)}, fix)]


def _aspect_findings(canvas: np.ndarray, s: _Settings) -> list[Finding]:
    ratios = (canvas[:, 3] - canvas[:, 1]) / np.maximum(canvas[:, 2] - canvas[:, 0], 1e-9)
    t, k = s.matched_threshold, ratio_tolerance(s.matched_threshold)
    outside = shape_unmatchable(ratios, s.grid.aspect_ratios, t)
    if np.mean(outside) < MIN_SHARE:
        return []
    # One more aspect ratio for the wide boxes and one for the tall ones: their medians.
    added = []
    for side, digits in ((ratios > 1, 2), (ratios <= 1, 4)):
        if np.any(outside & side):
            added.append(round(float(np.median(ratios[outside & side])), digits))
    new_ratios = list(s.grid.aspect_ratios) + added
    after = float(np.mean(shape_unmatchable(ratios, tuple(new_ratios), t)))
    return [Finding("aspect_ratios", "warning",
                    f"{int(outside.sum())} of {len(ratios)} boxes ({np.mean(outside):.1%}) have a width/height ratio "
                    f"more than {k:.2f}× away from every anchor aspect ratio "
                    f"({', '.join(f'{r:g}' for r in s.grid.aspect_ratios)}): no anchor can reach IoU {t:g} with "
                    f"them. Suggested: add aspect ratio {', '.join(f'{r:g}' for r in added)} ({after:.1%} would stay "
                    "unmatchable; more anchors per cell, so a detection checkpoint's box head no longer fits).",
                    {"boxes": len(ratios), "outside": int(outside.sum()), "outside_share": round(float(np.mean(outside)), 4),
                     "ratio_tolerance": round(k, 4), "after_fix_share": round(after, 4)},
                    {f"{ANCHORS}.aspect_ratios": new_ratios})]


# ---------------------------------------------------------------- schedule, batch, epochs


def _schedule_findings(s: _Settings, steps: int, chosen_at_launch: bool = False) -> list[Finding]:
    if s.schedule is None or steps <= 0:
        return []
    try:
        return _schedule_checks(s, steps, chosen_at_launch)
    except (TypeError, ValueError):
        return []  # a schedule field that is not a number: the validator's report


def _schedule_checks(s: _Settings, steps: int, chosen_at_launch: bool) -> list[Finding]:
    """`chosen_at_launch`: the run's length is not the config's num_steps but set for this run
    (a short trial run, say); a warmup longer than that is then a warning, not an error."""
    kind, p, path = s.schedule
    out = []
    too_long = "warning" if chosen_at_launch else "error"
    run = f"this run's {steps} steps (set at launch)" if chosen_at_launch else f"the run's {steps} steps"
    if kind == "cosine":
        warmup, total = int(p["warmup_steps"]), int(p["total_steps"])
        if warmup > 0 and warmup >= steps:
            out.append(Finding("schedule", too_long,
                               f"warmup_steps ({warmup}) ≥ {run}: training ends before the "
                               f"learning rate reaches learning_rate_base. Suggested: warmup_steps {steps // 10}, "
                               f"total_steps {steps}.", {"warmup_steps": warmup, "num_steps": steps},
                               {f"{path}.warmup_steps": steps // 10, f"{path}.total_steps": steps}))
            return out
        if total < steps:
            out.append(Finding("schedule", "warning",
                               f"total_steps ({total}) < the run's {steps} steps: the last {steps - total} steps "
                               f"train at learning rate 0. Suggested: total_steps {steps}.",
                               {"total_steps": total, "num_steps": steps}, {f"{path}.total_steps": steps}))
            return out
    elif kind == "manual_step" and p.get("warmup") and p.get("schedule"):
        first = min(manual_steps(p["schedule"])[0])
        if first >= steps:
            out.append(Finding("schedule", too_long,
                               f"the warmup runs to step {first}, at or past {run}: "
                               "training ends before it does. Suggested: move the schedule's steps inside the run.",
                               {"warmup_steps": first, "num_steps": steps}))
            return out
    if kind == "constant":
        return out
    peak = max(learning_rate(kind, p, x) for x in _peak_steps(kind, p, steps))
    last = learning_rate(kind, p, steps - 1)
    ratio = last / peak if peak > 0 else 0.0
    if ratio > LR_END_LIMIT:
        fix = {f"{path}.total_steps": steps} if kind == "cosine" else {}
        where = "total_steps " + str(p.get("total_steps")) if kind == "cosine" else "the schedule"
        advice = (f"Suggested: total_steps {steps}." if kind == "cosine" else
                  "Suggested: shorten the schedule's decay to the run's length.")
        out.append(Finding("schedule", "warning",
                           f"the learning rate at the last of the run's {steps} steps is {last:.3g}, {ratio:.0%} of its "
                           f"peak {peak:.3g} ({where}): training stops before the rate has decayed. {advice}",
                           {"num_steps": steps, "last_learning_rate": last, "peak_learning_rate": peak,
                            "last_share_of_peak": round(ratio, 4)}, fix))
    return out


def _batch_norm_findings(s: _Settings, steps: int) -> list[Finding]:
    """Batch norm's moving statistics, which evaluation and export normalize with, move by
    `1 − decay` of the way to each batch's: after `steps` updates `decay ** steps` of their
    initial values (mean 0 and variance 1, or the checkpoint's) is left. More than
    `BN_LEFT_LIMIT` is flagged; the fix is the largest decay of 3 decimals that leaves at most that."""
    if steps <= 0:
        return []
    slow = [(path, d) for path, d in s.batch_norms if 0 < d < 1 and d ** steps > BN_LEFT_LIMIT]
    if not slow:
        return []
    wanted = math.floor(BN_LEFT_LIMIT ** (1 / steps) * 1000) / 1000
    worst = max(d for _, d in slow)
    left = worst ** steps
    return [Finding("batch_norm", "warning",
                    f"batch_norm decay {worst:g} over the run's {steps} steps leaves {left:.0%} of the moving "
                    f"mean and variance at their initial values ({worst:g}^{steps}); evaluation and the "
                    f"exported model normalize with these averages, not with the batch statistics the "
                    f"model trained on. "
                    f"Suggested: decay {wanted:g} ({wanted ** steps:.2%} left) in "
                    + ", ".join(path[len(_SSD) + 1:].replace(".conv_hyperparams.batch_norm", "") for path, _ in slow)
                    + ".",
                    {"decay": worst, "num_steps": steps, "initial_share_left": round(left, 4),
                     "suggested_decay": wanted, "suggested_share_left": round(wanted ** steps, 6)},
                    {f"{path}.decay": wanted for path, _ in slow})]


def _peak_steps(kind: str, p: dict, steps: int) -> list[float]:
    """Steps where a schedule can peak: its start, warmup end and boundaries inside the run."""
    points = [0.0]
    if kind == "cosine":
        points.append(float(p["warmup_steps"]))
    if kind == "manual_step":
        points += [float(step) for step in manual_steps(p["schedule"])[0]]
    return [x for x in points if x < steps] or [0.0]


def _batch_findings(s: _Settings, steps: int, data: DatasetBoxes) -> list[Finding]:
    train = data.images_in("train")
    if train == 0:
        return [Finding("dataset", "warning", "the training split has no examples: there is nothing to learn "
                        "from; export a dataset version with labeled images in train.", {"train_images": 0})]
    out = []
    if s.batch_size < 1:
        return out
    if s.batch_size > train:
        fitting = 2 ** int(math.log2(train))
        out.append(Finding("batch", "warning",
                           f"batch_size {s.batch_size} is larger than the training split ({train} images): every "
                           f"batch repeats images. Suggested: batch_size {fitting}.",
                           {"batch_size": s.batch_size, "train_images": train}, {"train_config.batch_size": fitting}))
    if steps > 0:
        epochs = steps * s.batch_size / train
        if epochs < MIN_EPOCHS or epochs > MAX_EPOCHS:
            wanted = math.ceil(MIN_EPOCHS * train / s.batch_size) if epochs < MIN_EPOCHS \
                else math.floor(MAX_EPOCHS * train / s.batch_size)
            fix = {"train_config.num_steps": wanted}
            if s.schedule and s.schedule[0] == "cosine":
                fix[f"{s.schedule[2]}.total_steps"] = wanted
            what = "too few to learn the data" if epochs < MIN_EPOCHS else "the model will memorise the training images"
            out.append(Finding("epochs", "warning",
                               f"{steps} steps × batch {s.batch_size} over {train} training images is {epochs:.1f} "
                               f"epochs ({what}; aim for {MIN_EPOCHS}–{MAX_EPOCHS}). Suggested: num_steps {wanted}.",
                               {"epochs": round(epochs, 2), "num_steps": steps, "batch_size": s.batch_size,
                                "train_images": train}, fix))
    return out


# ---------------------------------------------------------------- classes


def _class_findings(data: DatasetBoxes) -> list[Finding]:
    splits = sorted(set(data.image_split.tolist()))
    split = data.split
    counts = {name: {sp: int(np.sum((data.labels == cid) & (split == sp))) for sp in splits}
              for cid, name in sorted(data.classes.items())}
    out = []
    empty = [n for n, c in counts.items() if c.get("train", 0) == 0]
    if empty and data.images_in("train"):
        out.append(Finding("classes", "warning",
                           f"no boxes of {', '.join(empty)} in the training split: the model cannot learn "
                           f"{'it' if len(empty) == 1 else 'them'}. Label some, or remove the class and re-export.",
                           {"classes": empty, "counts": counts}))
    few = {n: c["train"] for n, c in counts.items() if 0 < c.get("train", 0) < MIN_CLASS_BOXES}
    if few:
        out.append(Finding("classes", "warning",
                           "fewer than " + str(MIN_CLASS_BOXES) + " training boxes of "
                           + ", ".join(f"{n} ({k})" for n, k in few.items())
                           + ": too few to learn reliably. Label more of them.", {"classes": few, "counts": counts}))
    missing = {sp: [n for n, c in counts.items() if c[sp] == 0 and sum(c.values())] for sp in splits if sp != "train"}
    missing = {sp: names for sp, names in missing.items() if names}
    if missing:
        out.append(Finding("classes", "warning",
                           "; ".join(f"the {sp} split has no {', '.join(names)}" for sp, names in missing.items())
                           + ": those classes are not evaluated. Re-export (splits keep every class in each split "
                             "when it has enough images) or label more.", {"missing": missing, "counts": counts}))
    return out


def _num_classes_findings(s: _Settings, data: DatasetBoxes) -> list[Finding]:
    """num_classes above the label map's largest id trains (the OD API builds that many class
    outputs and the extra ones only ever see background), but it is nearly always a zoo config
    whose num_classes was not changed. (Below the largest id is `config_check`'s error.)"""
    largest = max(data.classes, default=0)
    if s.num_classes is None or not largest or s.num_classes <= largest:
        return []
    return [Finding("classes", "warning",
                    f"num_classes is {s.num_classes} but the dataset's label ids go up to {largest}: "
                    f"{s.num_classes - largest} class outputs are built and never see a box of their own "
                    f"(a zoo config's num_classes left as it was?). Set num_classes to {largest}.",
                    {"num_classes": s.num_classes, "largest_id": largest},
                    {f"{_SSD}.num_classes": largest})]


# ---------------------------------------------------------------- augmentation


def crop_losses(data: DatasetBoxes, params: dict[str, Any], seed: int = 0) -> dict[str, float]:
    """Simulate `random_crop_image` with `params` (the TF OD API's defaults otherwise) on the
    training images, `CROP_SAMPLES` windows each (at most `CROP_IMAGES` images), drawn as the
    trainer draws them (`crop_windows`: `tf.image.sample_distorted_bounding_box`'s kernel, 100
    attempts, the whole image when none is accepted; the original image with probability
    `random_coef`), from a seeded numpy generator instead of TensorFlow's.

    Returns, over all windows, the mean share of an image's boxes left with less than half of
    their area (`cut_share`) and the share of windows that drop every box (`emptied_share`;
    a box is dropped, as the trainer drops it, when it lies completely outside the window or
    less than `overlap_thresh` of its area is inside); the same two for the smallest windows
    the option allows, those drawn with the area range narrowed to `[min_area, 1.1 · min_area]`
    (`smallest_cut_share`, `smallest_emptied_share`); and the number of images simulated."""
    params = {**_CROP_DEFAULTS, **params}
    area = (float(params["min_area"]), float(params["max_area"]))
    every = _simulate_crops(data, params, area, seed)
    smallest = _simulate_crops(data, params, (area[0], min(area[1], area[0] * 1.1)), seed)
    return {"cut_share": every[0], "emptied_share": every[1], "smallest_cut_share": smallest[0],
            "smallest_emptied_share": smallest[1], "images": every[2]}


def crop_windows(height: int, width: int, boxes: np.ndarray, min_object_covered: float,
                 aspect_ratio_range: tuple[float, float], area_range: tuple[float, float],
                 rng: np.random.Generator, samples: int, max_attempts: int = 100) -> np.ndarray:
    """`samples` windows `[samples, 4]` (yxyx, integer pixels) as TensorFlow's
    `sample_distorted_bounding_box` kernel draws them for an image of `height`×`width` with
    normalised yxyx `boxes` `[M, 4]` (`use_image_if_no_bounding_boxes`, as the OD API calls it).

    Per attempt: an aspect ratio (width / height) uniform in its range; an integer height
    uniform between round(√(min_area / ratio)) and round(√(max_area / ratio)) (capped so the
    width fits and by the image height), width round(height · ratio), one step up or down when
    rounding left the area outside the range, the attempt failing if it still is; a corner
    uniform over the integer positions that fit. An attempt is accepted when the window has an
    area of at least 1 and covers `min_object_covered` of some box of area ≥ 1, boxes taken as
    the kernel takes them (corners truncated to integer pixels). After `max_attempts` refusals
    the window is the whole image. Rounding is numpy's round-half-to-even, as `lrintf`; the
    kernel's float32 arithmetic is done in float64."""
    H, W = int(height), int(width)
    shape = (samples, max_attempts)
    lo, hi = float(aspect_ratio_range[0]), float(aspect_ratio_range[1])
    ratio = rng.uniform(0, 1, shape) * (hi - lo) + lo
    min_area, max_area = float(area_range[0]) * W * H, float(area_range[1]) * W * H
    h = np.rint(np.sqrt(min_area / ratio))
    max_h = np.rint(np.sqrt(max_area / ratio))
    capped = np.floor((W + 0.5 - 1e-7) / ratio)
    capped = np.where(np.rint(capped * ratio) > W, capped - 1, capped)
    max_h = np.minimum(np.where(np.rint(max_h * ratio) > W, capped, max_h), H)
    h = np.minimum(h, max_h)
    h = h + np.floor(rng.uniform(0, 1, shape) * (np.maximum(max_h - h, 0) + 1))
    w = np.rint(h * ratio)
    low = w * h < min_area
    h = np.where(low, h + 1, h)
    w = np.where(low, np.rint(h * ratio), w)
    high = w * h > max_area
    h = np.where(high, h - 1, h)
    w = np.where(high, np.rint(h * ratio), w)
    valid = (w * h >= min_area) & (w * h <= max_area) & (w <= W) & (h <= H) & (w > 0) & (h > 0)
    y = np.where(h < H, np.floor(rng.uniform(0, 1, shape) * np.maximum(H - h, 1)), 0)
    x = np.where(w < W, np.floor(rng.uniform(0, 1, shape) * np.maximum(W - w, 1)), 0)
    windows = np.stack([y, x, y + h, x + w], axis=-1)  # [S, T, 4]
    clipped = np.clip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), 0.0, 1.0)
    rects = np.trunc(clipped * [H, W, H, W])
    if not len(rects):
        rects = np.array([[0.0, 0.0, H, W]])
    rect_area = (rects[:, 2] - rects[:, 0]) * (rects[:, 3] - rects[:, 1])
    covered = _kept(rects, windows) / np.maximum(rect_area, 1.0)  # [S, T, M]
    covers = np.any((covered >= min_object_covered) & (rect_area >= 1.0), axis=-1)
    accepted = valid & (w * h >= 1.0) & covers
    first = np.where(accepted.any(axis=1), accepted.argmax(axis=1), -1)
    chosen = windows[np.arange(samples), np.maximum(first, 0)]
    chosen[first < 0] = [0.0, 0.0, H, W]
    return chosen


def _simulate_crops(data: DatasetBoxes, params: dict[str, Any], area: tuple[float, float],
                    seed: int) -> tuple[float, float, int]:
    moc = float(params["min_object_covered"])
    ar = (float(params["min_aspect_ratio"]), float(params["max_aspect_ratio"]))
    thresh = float(params["overlap_thresh"])
    keep_whole = float(params["random_coef"])
    rng = np.random.default_rng(seed)
    train = np.flatnonzero(data.image_split == "train")
    with_boxes = [i for i in train if np.any(data.image == i)]
    if len(with_boxes) > CROP_IMAGES:
        with_boxes = sorted(rng.choice(with_boxes, CROP_IMAGES, replace=False))
    cut, emptied = [], []
    for i in with_boxes:
        h, w = data.image_hw[i]
        if h < 1 or w < 1:
            continue
        normalised = np.clip(data.boxes[data.image == i], 0.0, 1.0)
        boxes = normalised * [h, w, h, w]
        box_area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
        windows = crop_windows(int(h), int(w), normalised, moc, ar, area, rng, CROP_SAMPLES)
        inside = _kept(boxes, windows[:, None])[:, 0] / box_area  # [S, M]
        whole = rng.uniform(0, 1, CROP_SAMPLES) <= keep_whole if keep_whole > 0 else np.zeros(CROP_SAMPLES, bool)
        inside[whole] = 1.0
        cut.append(np.mean(inside < 0.5, axis=1))
        emptied.append(np.all((inside <= 0) | (inside < thresh), axis=1))
    if not cut:
        return 0.0, 0.0, 0
    return float(np.mean(np.concatenate(cut))), float(np.mean(np.concatenate(emptied))), len(cut)


def _kept(boxes: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Area of each box `[M, 4]` inside each window `[..., 4]` (yxyx px) → `[..., M]`."""
    b = boxes[None, None]
    win = windows[..., None, :]
    dy = np.clip(np.minimum(b[..., 2], win[..., 2]) - np.maximum(b[..., 0], win[..., 0]), 0, None)
    dx = np.clip(np.minimum(b[..., 3], win[..., 3]) - np.maximum(b[..., 1], win[..., 1]), 0, None)
    return dy * dx


def _crop_findings(s: _Settings, data: DatasetBoxes) -> list[Finding]:
    out = []
    for index, params in s.crops:
        losses = crop_losses(data, params)
        if losses["smallest_cut_share"] <= CROP_LOSS_LIMIT:
            continue
        path = f"train_config.data_augmentation_options[{index}].random_crop_image"
        params = {**_CROP_DEFAULTS, **params}
        covered = float(params["min_object_covered"])
        fix, after = {}, None
        for moc in (0.1, 0.3, 0.5, 0.7, 1.0):
            if moc > covered:
                after = crop_losses(data, {**params, "min_object_covered": moc})
                if after["smallest_cut_share"] <= CROP_LOSS_LIMIT:
                    fix = {f"{path}.min_object_covered": moc}
                    break
        advice = (f"Suggested: min_object_covered {moc:g} (then {after['smallest_cut_share']:.0%} at the "
                  "smallest windows)" if fix else "Suggested: raise min_area, or remove the option")
        out.append(Finding("augmentation", "warning",
                           f"random_crop_image (min_object_covered {covered:g}, min_area "
                           f"{float(params['min_area']):g}) can crop away most objects: its smallest "
                           f"windows leave {losses['smallest_cut_share']:.0%} of an image's boxes with under half "
                           f"their area and keep no box in {losses['smallest_emptied_share']:.0%} of crops "
                           f"({losses['cut_share']:.0%} and {losses['emptied_share']:.0%} over all its windows), "
                           f"simulated on {losses['images']} training images. {advice}.",
                           {**{k: round(v, 4) for k, v in losses.items()}, "option_index": index}, fix))
    return out


# ---------------------------------------------------------------- the doctor


def examine(text: str, version: DatasetVersion | None, *, num_steps: int | None = None,
            data: DatasetBoxes | None = None) -> Report:
    """Every finding for config `text` on dataset version `version` (`num_steps`: the run's
    own step count when it overrides `train_config.num_steps`; `data`: boxes already read,
    instead of the version's). Raises `ConfigSyntaxError` for text that does not parse."""
    doc = pc.ConfigDocument(text)
    s = _settings(doc)
    data = data if data is not None else dataset_boxes(version)
    steps = int(num_steps or s.num_steps)
    report = Report([], matched_threshold=s.matched_threshold)
    findings = _schedule_findings(s, steps, chosen_at_launch=bool(num_steps) and num_steps != s.num_steps)
    findings += _batch_norm_findings(s, steps)
    findings += _batch_findings(s, steps, data)
    findings += _coverage_findings(data, s, report)
    findings += _class_findings(data)
    findings += _num_classes_findings(s, data)
    findings += _crop_findings(s, data)
    report.findings = sorted(findings, key=lambda f: f.severity != "error")
    return report


def apply_fix(text: str, fix: dict[str, Any]) -> str:
    """The config with `fix`'s values set (`ConfigDocument.set`: only those values' characters
    change, missing fields are created), ready to diff and save as a new version."""
    doc = pc.ConfigDocument(text)
    for path, value in fix.items():
        doc.set(path, value)
    return doc.text
