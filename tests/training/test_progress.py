"""The files a training or evaluation process leaves for whoever watches it (`training/progress.py`):
`metrics.json` has one reader, used by the evaluator, the Runs page's artefacts and the model
registry alike."""
from __future__ import annotations

import json

from backend import run_artefacts
from backend.model_registry import _read_metrics
from backend.training import progress

METRICS = {
    "ckpt-3": {"checkpoint": "ckpt-3", "step": 300, "num_images": 12, "pr_curves": {},
               "metrics": {"DetectionBoxes_Precision/mAP": 0.31,
                           "DetectionBoxes_Precision/mAP ByCategory/cat": 0.4}},
    "ckpt-5": {"checkpoint": "ckpt-5", "step": 500, "num_images": 12, "pr_curves": {"cat": [1.0, 0.5]},
               "metrics": {"DetectionBoxes_Precision/mAP": 0.45}},
}


def test_an_evaluations_metrics_json_is_read_the_same_by_runs_and_the_registry(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "evaluation").mkdir(parents=True)
    (run_dir / "evaluation" / progress.METRICS_FILE).write_text(json.dumps(METRICS))
    assert progress.read_metrics(run_dir / "evaluation") == METRICS
    assert [(e["step"], e["checkpoint"], e["metrics"], e["per_class"]) for e in
            run_artefacts.evaluations({"model_dir": str(run_dir)})] == [
        (300, str(run_dir / "ckpt-3"), {"DetectionBoxes_Precision/mAP": 0.31}, {"cat": 0.4}),
        (500, str(run_dir / "ckpt-5"), {"DetectionBoxes_Precision/mAP": 0.45}, {})]
    assert _read_metrics(tmp_path / "export", run_dir, checkpoint="/x/ckpt-3") == {
        "DetectionBoxes_Precision/mAP": 0.31, "step": 300}
    assert _read_metrics(run_dir) == {"DetectionBoxes_Precision/mAP": 0.45, "step": 500}  # the latest


def test_a_missing_torn_or_foreign_metrics_json_reads_as_no_evaluation_yet(tmp_path):
    run = {"model_dir": str(tmp_path)}
    assert progress.read_metrics(tmp_path / "evaluation") == {} and run_artefacts.evaluations(run) == []
    (tmp_path / "evaluation").mkdir()
    for text in ('{"ckpt-3": {"step": 3', "[1, 2]", "null"):
        (tmp_path / "evaluation" / "metrics.json").write_text(text)
        assert progress.read_metrics(tmp_path / "evaluation") == {}, text
        assert run_artefacts.evaluations(run) == [] and _read_metrics(tmp_path) == {}, text
