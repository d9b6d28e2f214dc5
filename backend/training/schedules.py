"""The TF OD API's learning-rate schedules as plain Python (no TensorFlow), for one step at a
time: what the config doctor asks ("what is the rate at the last step?"). The trainer runs the
same formulas as TensorFlow ops (`train.PipelineLearningRate`); a test holds the two equal.

Missing fields take `optimizer.proto`'s defaults (`LEARNING_RATE_DEFAULTS`, read from the
schema in `backend.pipeline_schema`).
"""
from __future__ import annotations

import math
from typing import Any

from backend import pipeline_schema
from backend.errors import Invalid

# schedule kind → its message in optimizer.proto (the same for every optimizer)
SCHEDULE_MESSAGES = {"constant": "constant_learning_rate", "exponential": "exponential_decay_learning_rate",
                     "manual_step": "manual_step_learning_rate", "cosine": "cosine_decay_learning_rate"}
_RATE = "train_config.optimizer.momentum_optimizer.learning_rate"
LEARNING_RATE_DEFAULTS: dict[str, dict[str, Any]] = {
    kind: {**pipeline_schema.defaults(f"{_RATE}.{message}"),
           **({"schedule": []} if kind == "manual_step" else {})}  # repeated message: none by default
    for kind, message in SCHEDULE_MESSAGES.items()}
# one `schedule { step learning_rate }` entry of manual_step_learning_rate
STEP_DEFAULTS = pipeline_schema.defaults(f"{_RATE}.manual_step_learning_rate.schedule")


def manual_steps(schedule: list[dict[str, Any]]) -> tuple[list[int], list[float]]:
    """A manual_step schedule's boundaries and the rate from each on, the schema's defaults
    filled in (the trainer's TensorFlow schedule reads them here too)."""
    entries = [{**STEP_DEFAULTS, **entry} for entry in schedule]
    return [int(e["step"]) for e in entries], [float(e["learning_rate"]) for e in entries]


def learning_rate_at(kind: str, params: dict[str, Any], step: float) -> float:
    """The rate at optimizer step `step` of schedule `kind` (constant, exponential,
    manual_step, cosine) with `params` (the config's fields, defaults filled in)."""
    if kind not in LEARNING_RATE_DEFAULTS:
        raise Invalid(f"unknown learning-rate schedule {kind!r}")

    def get(name: str):
        return params.get(name, LEARNING_RATE_DEFAULTS[kind][name])

    if kind == "constant":
        return float(get("learning_rate"))
    if kind == "exponential":
        initial = float(get("initial_learning_rate"))
        burnin_steps = int(get("burnin_steps"))
        exponent = (step - burnin_steps) / float(get("decay_steps"))
        if get("staircase"):
            exponent = math.floor(exponent)
        rate = (float(get("burnin_learning_rate")) or initial) if step < burnin_steps else \
            initial * float(get("decay_factor")) ** exponent
        return max(rate, float(get("min_learning_rate")))
    if kind == "manual_step":
        initial = float(get("initial_learning_rate"))
        boundaries, after = manual_steps(list(get("schedule")))
        rates = [initial] + after
        if get("warmup") and boundaries and step < boundaries[0]:
            return initial + (rates[1] - initial) / boundaries[0] * math.floor(step)
        rate = rates[0]
        for boundary, value in zip(boundaries, rates[1:]):
            if step >= boundary:
                rate = value
        return rate
    base = float(get("learning_rate_base"))
    total = int(get("total_steps"))
    warmup_lr = float(get("warmup_learning_rate"))
    warmup = int(get("warmup_steps"))
    hold = int(get("hold_base_rate_steps"))
    if step > total:
        return 0.0
    if warmup > 0 and step < warmup:
        return (base - warmup_lr) / warmup * step + warmup_lr
    if hold > 0 and step <= warmup + hold:
        return base
    return 0.5 * base * (1.0 + math.cos(math.pi * (step - warmup - hold) / float(total - warmup - hold)))
