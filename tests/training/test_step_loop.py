"""The step loop runs the steps between two logs (or checkpoints) in one tf.function call, and
still logs, checkpoints and ends at exactly the steps it did one step per call."""
from __future__ import annotations

import pytest

from backend.training import progress
from backend.training.train import _steps_to_boundary, run_training


def test_steps_run_up_to_the_next_log_checkpoint_or_end():
    # (step, total, log_every, checkpoint_every_n) -> steps in the next call
    assert _steps_to_boundary(1, 1500, 75, 500) == 74     # to the log at 75
    assert _steps_to_boundary(75, 1500, 75, 500) == 75    # to 150
    assert _steps_to_boundary(450, 1500, 75, 500) == 50   # the checkpoint at 500 comes before the log at 525
    assert _steps_to_boundary(500, 1500, 75, 500) == 25   # then the log at 525
    assert _steps_to_boundary(1490, 1500, 75, 500) == 10  # the end
    assert _steps_to_boundary(3, 7, 3, 0) == 3            # no periodic checkpoints
    assert _steps_to_boundary(6, 7, 3, 0) == 1
    assert _steps_to_boundary(5, 7, 1, 0) == 1            # log_every_n=1: one step a call


@pytest.mark.slow
def test_multi_step_calls_log_and_checkpoint_at_the_same_steps(tiny_config_path, tmp_path):
    config = tiny_config_path(num_steps=7, batch_size=2, augment=False)
    model_dir = tmp_path / "run"
    status = run_training(config, model_dir, log_every_n=3, checkpoint_every_n=5)
    assert status["state"] == "succeeded" and status["step"] == 7
    # The first step of the process is logged alone, then every 3rd step and the last.
    assert [row["step"] for row in progress.read_history(model_dir)] == [1, 3, 6, 7]
    from backend.training.evaluate import checkpoint_step
    assert [checkpoint_step(str(model_dir / f"ckpt-{n}")) for n in (1, 2)] == [5, 7]
    # A resumed run continues from step 7 in the same way.
    status = run_training(config, model_dir, num_train_steps=12, log_every_n=3, checkpoint_every_n=5)
    assert status["step"] == 12
    assert [row["step"] for row in progress.read_history(model_dir)] == [1, 3, 6, 7, 8, 9, 12]
    assert checkpoint_step(str(model_dir / "ckpt-3")) == 10 and checkpoint_step(str(model_dir / "ckpt-4")) == 12
