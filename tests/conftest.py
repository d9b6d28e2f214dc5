"""Shared fixtures: a fresh data directory and database per test, users of every role, and
real images made with Pillow."""
from __future__ import annotations

import os

import pytest

# Password hashes at scrypt N=2**10 keep the suite fast; tests/test_auth.py checks the
# production cost (2**17) once with this variable removed. Subprocesses inherit it.
os.environ["BOXWISE_SCRYPT_N"] = str(2**10)

from backend import auth, db as database, projects


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
