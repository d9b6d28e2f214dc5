"""The TF OD API's learning-rate schedules and optimizers, hand-computed at the boundary steps."""
from __future__ import annotations

import math

import numpy as np
import pytest

from backend.config_document import ConfigDocument
from backend.config_check import check
from backend.training.training_config import training_config
from backend.training.train import PipelineLearningRate, build_optimizer
from tests.helpers import small128_with_optimizer


def rates(kind, params, steps):
    schedule = PipelineLearningRate(kind, params)
    return [float(schedule(step)) for step in steps]


def test_constant_and_its_proto_default():
    assert rates("constant", {"learning_rate": 0.05}, [0, 10**6]) == pytest.approx([0.05, 0.05])
    assert rates("constant", {}, [0]) == pytest.approx([0.002])


def test_cosine_with_warmup_at_the_boundaries():
    params = {"learning_rate_base": 0.08, "total_steps": 50000, "warmup_learning_rate": 0.026666,
              "warmup_steps": 1000}
    slope = (0.08 - 0.026666) / 1000
    assert rates("cosine", params, [0, 500, 999, 1000, 25500, 50000, 50001]) == pytest.approx(
        [0.026666, 0.026666 + 500 * slope, 0.026666 + 999 * slope, 0.08, 0.04, 0.0, 0.0], abs=1e-7)


def test_cosine_holds_the_base_rate_through_warmup_plus_hold():
    params = {"learning_rate_base": 0.1, "total_steps": 1100, "warmup_learning_rate": 0.0,
              "warmup_steps": 50, "hold_base_rate_steps": 50}
    got = rates("cosine", params, [49, 50, 100, 101, 600, 1100])
    assert got == pytest.approx([0.1 * 49 / 50, 0.1, 0.1, 0.05 * (1 + math.cos(math.pi / 1000)), 0.05, 0.0],
                                abs=1e-7)


def test_cosine_proto_defaults():
    # base 0.002, warmup from 0.0002 over 10,000 steps, 4,000,000 steps in all.
    assert rates("cosine", {}, [0, 5000, 10000]) == pytest.approx([0.0002, 0.0011, 0.002], abs=1e-8)


def test_exponential_decay_counts_from_the_end_of_burn_in():
    params = {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_factor": 0.5, "burnin_steps": 5,
              "burnin_learning_rate": 0.01, "min_learning_rate": 0.005}
    assert rates("exponential", params, [0, 4, 5, 14, 15, 25]) == pytest.approx(
        [0.01, 0.01, 0.1, 0.1, 0.05, 0.025])
    smooth = dict(params, staircase=False)
    assert rates("exponential", smooth, [10]) == pytest.approx([0.1 * 0.5 ** 0.5])
    # burnin_learning_rate 0 means the initial rate; the minimum holds during burn-in too.
    assert rates("exponential", dict(params, burnin_learning_rate=0.0), [0]) == pytest.approx([0.1])
    assert rates("exponential", dict(params, min_learning_rate=0.03), [0, 25]) == pytest.approx([0.03, 0.03])


def test_manual_step_with_and_without_warmup():
    schedule = [{"step": 10, "learning_rate": 0.01}, {"step": 20, "learning_rate": 0.001}]
    params = {"initial_learning_rate": 0.1, "schedule": schedule}
    assert rates("manual_step", params, [0, 9, 10, 19, 20, 10**6]) == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    warm = dict(params, warmup=True)
    assert rates("manual_step", warm, [0, 5, 9, 10, 20]) == pytest.approx([0.1, 0.055, 0.019, 0.01, 0.001])


def test_the_schedules_the_od_api_refuses_are_config_problems():
    manual = """  optimizer { momentum_optimizer { learning_rate { manual_step_learning_rate {
      initial_learning_rate: 0.1 schedule { step: 20 learning_rate: 0.01 } schedule { step: 10 learning_rate: 0.001 }
    } } } use_moving_average: false }
"""
    messages = [p.message for p in check(small128_with_optimizer(manual), files=False)]
    assert messages == ["schedule steps must increase strictly (they are [20, 10])"]
    cosine = """  optimizer { adam_optimizer { learning_rate { cosine_decay_learning_rate {
      learning_rate_base: 0.1 total_steps: 300 warmup_steps: 100 hold_base_rate_steps: 200 } } } use_moving_average: false }
"""
    messages = [p.message for p in check(small128_with_optimizer(cosine), files=False)]
    assert messages == ["total_steps (300) must be more than warmup_steps + hold_base_rate_steps (100 + 200)"]
    # The OD API raises "Learning_rate None not supported" for an optimizer without a rate.
    messages = [p.message for p in check(small128_with_optimizer("  optimizer { adam_optimizer { } }\n"), files=False)]
    assert messages == ["needs a learning_rate { ... } (constant_learning_rate, exponential_decay_learning_rate, "
                        "manual_step_learning_rate or cosine_decay_learning_rate)",
                        "use_moving_average is true by default in the TF OD API and this trainer keeps no moving "
                        "average: add use_moving_average: false"]


def _step(optimizer, values, gradients):
    import keras
    variables = [keras.Variable(np.asarray(v, np.float32)) for v in values]
    optimizer.apply_gradients(zip([np.asarray(g, np.float32) for g in gradients], variables))
    return [np.asarray(v) for v in variables]


def test_gradient_clipping_by_norm_clips_the_global_norm():
    text = """  optimizer { momentum_optimizer { learning_rate { constant_learning_rate { learning_rate: 1.0 } }
      momentum_optimizer_value: 0.0 } use_moving_average: false }
  gradient_clipping_by_norm: 1.0
"""
    config = training_config(ConfigDocument(small128_with_optimizer(text)))
    optimizer = build_optimizer(config)
    assert optimizer.global_clipnorm == 1.0 and optimizer.clipnorm is None
    # Gradients (3, 0) and (0, 4): global norm 5, both scaled by 1/5 (not each to norm 1).
    a, b = _step(optimizer, [[0.0, 0.0], [0.0, 0.0]], [[3.0, 0.0], [0.0, 4.0]])
    np.testing.assert_allclose(a, [-0.6, 0.0], atol=1e-6)
    np.testing.assert_allclose(b, [0.0, -0.8], atol=1e-6)


def test_optimizer_proto_defaults():
    rate = "learning_rate { constant_learning_rate { } }"
    adam = training_config(ConfigDocument(small128_with_optimizer(f"  optimizer {{ adam_optimizer {{ {rate} }} use_moving_average: false }}\n")))
    assert adam.optimizer.epsilon == 1e-8
    rms = training_config(ConfigDocument(small128_with_optimizer(f"  optimizer {{ rms_prop_optimizer {{ {rate} }} use_moving_average: false }}\n")))
    assert (rms.optimizer.momentum, rms.optimizer.epsilon, rms.optimizer.decay) == (0.9, 1.0, 0.9)
    momentum = training_config(ConfigDocument(small128_with_optimizer(f"  optimizer {{ momentum_optimizer {{ {rate} }} use_moving_average: false }}\n")))
    assert momentum.optimizer.momentum == 0.9 and momentum.optimizer.clipnorm is None


def test_rms_prop_steps_as_the_od_api_builds_it():
    """Keras 2's RMSprop(lr, decay=0.9, momentum=0.9, epsilon=1.0), which the OD API builds:
    epsilon inside the square root and `decay` dividing the rate by (1 + decay · step)."""
    text = """  optimizer { rms_prop_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.1 } }
      momentum_optimizer_value: 0.9 decay: 0.9 epsilon: 1.0 } use_moving_average: false }
"""
    optimizer = build_optimizer(training_config(ConfigDocument(small128_with_optimizer(text))))
    import keras
    w = keras.Variable(np.ones([1], np.float32))
    optimizer.apply_gradients([(np.full([1], 2.0, np.float32), w)])
    first = 0.1 * 2 / math.sqrt(0.1 * 4 + 1.0)            # ms = 0.4
    assert float(w.numpy()[0]) == pytest.approx(1 - first, abs=1e-6)
    optimizer.apply_gradients([(np.full([1], 2.0, np.float32), w)])
    second = 0.9 * first + 0.1 / (1 + 0.9) * 2 / math.sqrt(0.76 + 1.0)  # ms = 0.9·0.4 + 0.4
    assert float(w.numpy()[0]) == pytest.approx(1 - first - second, abs=1e-6)  # 0.599496


def test_add_background_class_false_is_refused():
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "fixtures" / "odapi" / "small128" / "pipeline.config").read_text()
    text = text.replace("    encode_background_as_zeros: true\n",
                        "    encode_background_as_zeros: true\n    add_background_class: false\n")
    problems = check(text, files=False)
    assert [(p.path, p.message) for p in problems] == [
        ("model.ssd.add_background_class", "false is not supported here (supported: true)")]
