"""Shared fixtures: a fresh data directory and database per test, users of every role, and
real images made with Pillow."""
from __future__ import annotations

import os
import signal
import sys

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
