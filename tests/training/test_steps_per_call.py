"""How many steps each call of the training loop runs (`train.steps_this_call`): calls end on
every logged step, checkpoint and the last step, and take about `CALL_SECONDS`."""
from __future__ import annotations

from backend.training import train


def test_the_first_calls_run_one_step_until_the_speed_is_known():
    assert train.steps_this_call(0, 1500, 75, 1000, None) == 1
    assert train.steps_this_call(1, 1500, 75, 1000, None) == 1


def test_a_call_ends_on_the_next_logged_step():
    assert train.steps_this_call(2, 1500, 75, 1000, 0.001) == 73
    assert train.steps_this_call(70, 1500, 75, 1000, 0.001) == 5
    assert train.steps_this_call(75, 1500, 75, 1000, 0.001) == 75


def test_a_call_ends_on_the_next_checkpoint_and_on_the_last_step():
    assert train.steps_this_call(990, 1500, 100, 1000, 0.001) == 10
    assert train.steps_this_call(1480, 1500, 100, 0, 0.001) == 20
    assert train.steps_this_call(1498, 1500, 75, 1000, 0.001) == 2


def test_a_call_takes_about_call_seconds_at_the_last_speed():
    assert train.CALL_SECONDS == 1.0
    assert train.steps_this_call(100, 1500, 100, 1000, 0.25) == 4
    assert train.steps_this_call(100, 1500, 100, 1000, 0.3) == 3
    assert train.steps_this_call(100, 1500, 100, 1000, 2.5) == 1


def test_never_more_than_model_main_tf2s_hundred_steps_a_call():
    assert train.MAX_STEPS_PER_CALL == 100
    assert train.steps_this_call(0, 100_000, 1000, 5000, 1e-6) == 100
