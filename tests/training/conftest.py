"""A tiny pipeline.config that trains on the generated shapes (`shapes_data` and the trained
`shapes_model` made from them are session fixtures in tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from backend.config_document import ConfigDocument
from backend.training.templates import render_template

SHAPES = {"max_objects": 1, "min_fraction": 0.4, "max_fraction": 0.7}


def tiny_config(data: Path, train_glob: str, eval_glob: str, *, size: int = 64, batch_size: int = 8,
                num_steps: int = 300, learning_rate: float = 0.01, augment: bool = True,
                bn_decay: float = 0.97) -> str:
    """The quick template at `size` px and MobileNetV2 width 0.35 (the trainer tests' small network;
    the template itself is at 1.0), with a learning rate that learns shapes in a few hundred steps
    (and a batch-norm decay whose moving averages settle within them)."""
    text = render_template("quick", num_classes=2, train_input=train_glob, eval_input=eval_glob,
                           label_map_path=str(data / "label_map.pbtxt"), num_steps=num_steps,
                           batch_size=batch_size)
    doc = ConfigDocument(text)
    doc.set("model.ssd.feature_extractor.depth_multiplier", 0.35)
    doc.set("model.ssd.image_resizer.fixed_shape_resizer.height", size)
    doc.set("model.ssd.image_resizer.fixed_shape_resizer.width", size)
    doc.set("train_config.optimizer.adam_optimizer.learning_rate.cosine_decay_learning_rate.learning_rate_base",
            learning_rate)
    doc.set("train_config.optimizer.adam_optimizer.learning_rate.cosine_decay_learning_rate.warmup_learning_rate",
            learning_rate / 10)
    # The recipe's anchors: 32 and 45 px at level 3, which the test shapes (26-45 px) match.
    doc.set("model.ssd.anchor_generator.multiscale_anchor_generator.anchor_scale", 4.0)
    for hyper in ("feature_extractor", "box_predictor.weight_shared_convolutional_box_predictor"):
        doc.set(f"model.ssd.{hyper}.conv_hyperparams.batch_norm.decay", bn_decay)
    if not augment:
        doc.remove("train_config.data_augmentation_options[1]")
    return doc.text


@pytest.fixture
def tiny_config_path(shapes_data, tmp_path):
    data, train_glob, eval_glob, _ = shapes_data

    def make(**kwargs) -> Path:
        path = tmp_path / "pipeline.config"
        path.write_text(tiny_config(data, train_glob, eval_glob, **kwargs))
        return path
    return make
