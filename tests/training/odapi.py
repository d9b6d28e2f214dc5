"""The TF OD API reference fixtures (tests/fixtures/odapi, see its README) and comparisons against them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "odapi"
TOLERANCE = 1e-4
DETECTION_KEYS = ("detection_boxes", "detection_scores", "detection_classes", "detection_multiclass_scores")


def config_without_fine_tune(name: str, folder: Path) -> Path:
    """The fixture `name`'s pipeline.config with its fine-tune checkpoint replaced for inference,
    written into `folder`."""
    from backend.config_document import ConfigDocument
    from backend.training.train import replace_fine_tune_for_inference
    path = folder / f"{name}.config"
    path.write_text(replace_fine_tune_for_inference(ConfigDocument.load(FIXTURES / name / "pipeline.config")).text)
    return path


def outputs(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / name / "outputs.npz") as data:
        return {key: data[key] for key in data.files}


def compare(found: dict[str, np.ndarray], expected: dict[str, np.ndarray], image: int) -> dict[str, float]:
    """Max abs differences of one image's outputs against the fixture; asserts that the raw
    per-anchor outputs and the final detections (paired by anchor index and class) agree within
    `TOLERANCE`, with the same number of detections and the same (anchor, class) pairs."""
    prefix = f"image{image}/"
    diffs = {}
    for key in ("raw_detection_boxes", "raw_detection_scores"):
        assert found[key].shape == expected[prefix + key].shape, key
        diffs[key] = float(np.abs(found[key] - expected[prefix + key]).max())
    count = int(expected[prefix + "num_detections"][0])
    assert int(found["num_detections"][0]) == count

    def pairs(result):
        anchors = result["detection_anchor_indices"][0, :count].astype(int)
        classes = result["detection_classes"][0, :count].astype(int)
        return {(a, c): i for i, (a, c) in enumerate(zip(anchors, classes))}

    ours, theirs = pairs(found), pairs({k[len(prefix):]: v for k, v in expected.items() if k.startswith(prefix)})
    assert set(ours) == set(theirs), f"detections differ: {sorted(set(ours) ^ set(theirs))[:5]}"
    order_ours = [ours[p] for p in theirs]
    order_theirs = list(theirs.values())
    for key in DETECTION_KEYS:
        diffs[key] = float(np.abs(found[key][0, order_ours] - expected[prefix + key][0, order_theirs]).max())
    too_far = {k: v for k, v in diffs.items() if not v <= TOLERANCE}
    assert not too_far, f"image {image}: {too_far}"
    return diffs
