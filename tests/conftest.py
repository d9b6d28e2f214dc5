"""Shared fixtures: a fresh data directory and database per test, users of every role, real
images made with Pillow, and the session's read-only trained models (`shapes_model`,
`odapi_boxwise_export`), each built once and only when a test asks for it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# Password hashes at scrypt N=2**10 keep the suite fast; tests/test_auth.py checks the
# production cost (2**17) once with this variable removed. Subprocesses inherit it.
os.environ["BOXWISE_SCRYPT_N"] = str(2**10)

from backend import auth, db as database, projects, run_processes, saved_configs, server_settings
from backend.auth import CLI_ACTOR
from tests.helpers import CONFIG, STAND_IN, STAND_IN_RUNNER, add_image, make_dataset_version


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    path = tmp_path / "data"
    path.mkdir()
    monkeypatch.setenv("BOXWISE_DATA", str(path))
    return path


@pytest.fixture
def db(data_dir):
    connection = database.connect(data_dir / "boxwise.db")
    yield connection
    connection.conn.close()


@pytest.fixture
def admin(db):
    return auth.create_first_admin(db, "admin", "admin-password")


@pytest.fixture
def users(db, admin):
    """One user of each role, keyed by role."""
    made = {"admin": admin}
    for role in ("reviewer", "labeler", "viewer"):
        made[role] = auth.add_user(db, admin, role, f"{role}-password", role)
    return made


@pytest.fixture
def project(db, admin):
    return projects.create_project(db, admin, "pets", ["cat", "dog", "bird"])


@pytest.fixture
def labeled(db, admin, project):
    """Six labeled images of three classes in `project`, one negative, one image still new."""
    pid = project["id"]
    ids = {
        "a.jpg": add_image(db, admin, pid, "a.jpg", (64, 48), (250, 0, 0),
                           boxes=[("cat", 1.5, 2.25, 30.5, 40.0), ("dog", 10, 10, 60, 47)]),
        "b.jpg": add_image(db, admin, pid, "b.jpg", (80, 60), (0, 250, 0),
                           boxes=[("cat", 0, 0, 80, 60)]),
        "c.png": add_image(db, admin, pid, "c.png", (50, 40), (0, 0, 250), fmt="PNG",
                           boxes=[("bird", 5, 6, 25, 30), ("cat", 20, 10, 45, 35)], status="reviewed"),
        "d.jpg": add_image(db, admin, pid, "d.jpg", (64, 64), (120, 120, 0),
                           boxes=[("dog", 3, 4, 33, 44)]),
        "e.jpg": add_image(db, admin, pid, "e.jpg", (40, 30), (0, 120, 120),
                           boxes=[("bird", 2, 2, 38, 28)]),
        "neg.jpg": add_image(db, admin, pid, "neg.jpg", (32, 32), (10, 10, 10), no_objects=True),
        "new.jpg": add_image(db, admin, pid, "new.jpg", (32, 32), (90, 10, 200), status="new"),
    }
    return ids


# ---------------------------------------------------------------- a real trained Boxwise model


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory):
    """`(directory, train_glob, eval_glob, eval_truth)`: 64 training and 16 eval images of 64 px, one
    shape each, 40–70 % of the side: sizes the smallest anchors (32 and 45 px) match well, so a
    few hundred CPU steps learn them."""
    from tests.training.conftest import SHAPES
    from tests.training.shapes import write_dataset, write_label_map
    data = tmp_path_factory.mktemp("shapes")
    train_glob, _ = write_dataset(data, "train", 64, size=64, shards=2, seed=0, **SHAPES)
    eval_glob, truth = write_dataset(data, "val", 16, size=64, shards=1, seed=1, **SHAPES)
    write_label_map(data)
    return data, train_glob, eval_glob, truth


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory):
    """A small SavedModel detector in the Boxwise export layout (`savedmodels.build_detector`:
    `saved_model/` and `label_map.pbtxt` with cat=1, dog=2), built once per session and only when
    a test asks for it. Read-only: a test that changes it works on a copy."""
    from tests import savedmodels
    return savedmodels.build_detector(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def shapes_model(shapes_data, tmp_path_factory):
    """One real trained Boxwise model for the session, built only when a test asks for it:
    `{"root", "config", "run", "export", "train_glob", "val_glob", "label_map"}`. The 64 px
    detector (MobileNetV2 at width 0.35, batch 16, no augmentation) trained for 300 steps with
    `python -m backend train`'s main() and a checkpoint every 150 steps (ckpt-1 at 150, ckpt-2 at
    300), then exported by a `python -m backend export-model --input_type=image_tensor`
    subprocess. Read-only: a test that changes any of it works on a copy."""
    from backend.__main__ import main
    from tests.training.conftest import tiny_config
    data, train_glob, eval_glob, _ = shapes_data
    root = tmp_path_factory.mktemp("shapes_model")
    config = root / "pipeline.config"
    config.write_text(tiny_config(data, train_glob, eval_glob, num_steps=300, batch_size=16, augment=False))
    run = root / "run"
    assert main(["train", f"--pipeline_config_path={config}", f"--model_dir={run}",
                 "--checkpoint_every_n=150"]) == 0
    export = root / "export"
    done = subprocess.run([sys.executable, "-m", "backend", "export-model", "--input_type=image_tensor",
                           f"--pipeline_config_path={run / 'pipeline.config'}",
                           f"--trained_checkpoint_dir={run}", f"--output_directory={export}"],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    return {"root": root, "config": run / "pipeline.config", "run": run, "export": export,
            "train_glob": train_glob, "val_glob": eval_glob, "label_map": data / "label_map.pbtxt"}


@pytest.fixture(scope="session")
def odapi_boxwise_export(tmp_path_factory):
    """`export(name) -> folder`: Boxwise's export_model of the OD API fixture checkpoint `name`
    (zoo320, small128 in tests/fixtures/odapi) under its pipeline.config with the fine-tune
    checkpoint replaced for inference; each made once per session, read-only."""
    made: dict[str, Path] = {}

    def export(name: str) -> Path:
        if name not in made:
            from backend.training.savedmodel_export import export_model
            from tests.training.odapi import FIXTURES, config_without_fine_tune
            folder = tmp_path_factory.mktemp(f"odapi_export_{name}")
            made[name] = export_model(config_without_fine_tune(name, folder), FIXTURES / name / "checkpoint",
                                      folder / "exported")
        return made[name]
    return export


# ---------------------------------------------------------------- runs (tests/helpers.py has the stand-in)



@pytest.fixture
def stand_in(tmp_path, data_dir):
    """The stand-in trainer as the external runner `stand-in` of the server settings (written
    as the command line would); returns the runner's name."""
    path = tmp_path / "stand_in_trainer.py"
    path.write_text(STAND_IN)
    server_settings.set_runner(CLI_ACTOR, STAND_IN_RUNNER, sys.executable, str(path))
    return STAND_IN_RUNNER


@pytest.fixture
def setup(db, project, users, data_dir):
    """A dataset version and a saved config; `actor` is an admin, the role external runners need."""
    export_id = make_dataset_version(db, project, data_dir)
    config = saved_configs.save_config(db, users["reviewer"], project["id"], "stand-in", CONFIG)
    return {"export_id": export_id, "config_id": config["id"], "project_id": project["id"],
            "actor": users["admin"]}


@pytest.fixture(autouse=True)
def _stop_leftovers():
    """Kill any process group a failed test left running."""
    yield
    for pid in list(run_processes._children):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        run_processes._children.pop(pid).wait()
