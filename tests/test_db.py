import sqlite3

from backend import auth, db as database, projects
def test_new_database_has_design_tables_wal_and_foreign_keys(data_dir):
    db = database.connect()
    assert (data_dir / "boxwise.db").exists()
    for table in ("users", "projects", "labels", "images", "annotations", "annotation_events",
                  "exports", "configs", "runs", "models"):
        assert db[table].exists(), table
    assert db.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert db.execute("pragma foreign_keys").fetchone()[0] == 1
    assert db.execute("pragma busy_timeout").fetchone()[0] == database.BUSY_TIMEOUT_MS


def test_older_database_upgrades_in_place_and_keeps_its_rows(data_dir):
    path = data_dir / "old.db"
    old = database.connect(path, migrate=False)
    second = database.MIGRATIONS._migrations[1].name
    database.MIGRATIONS.apply(old, stop_before=second)
    assert [m.name for m in database.MIGRATIONS.applied(old)] == ["m001_core_tables"]
    assert not old["sessions"].exists()
    old["users"].insert({"username": "ann", "password_hash": auth.hash_password("pw-123456"),
                         "role": "admin", "disabled": 0, "created_at": 1.0})
    old["projects"].insert({"name": "legacy", "next_label_map_id": 2, "created_at": 1.0})
    old["labels"].insert({"project_id": 1, "label_map_id": 1, "name": "cat", "position": 0})
    old["images"].insert({"project_id": 1, "sha256": "ab" * 32, "path": "images/x.jpg",
                          "width": 10, "height": 10, "status": "labeled", "version": 3})
    old["annotations"].insert({"image_id": 1, "label_id": 1, "xmin": 1, "ymin": 2, "xmax": 5,
                               "ymax": 6, "source": "human"})
    old.conn.close()

    upgraded = database.connect(path)
    applied = [m.name for m in database.MIGRATIONS.applied(upgraded)]
    assert applied == [m.name for m in database.MIGRATIONS._migrations]
    assert upgraded["sessions"].exists()
    image = upgraded["images"].get(1)
    assert (image["status"], image["version"], image["no_objects"]) == ("labeled", 3, 0)
    assert upgraded.execute("select xmin, ymin, xmax, ymax from annotations").fetchall() == [(1, 2, 5, 6)]
    user, _ = auth.login(upgraded, "ann", "pw-123456")
    assert user["username"] == "ann"
    label = projects.add_label(upgraded, user, 1, "dog")
    assert label["label_map_id"] == 2


def test_transaction_rolls_back_every_write_on_error(db, admin):
    try:
        with database.transaction(db):
            projects.create_project(db, admin, "half")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert db.execute("select count(*) from projects").fetchone()[0] == 0


def test_foreign_keys_are_enforced(db):
    try:
        db["labels"].insert({"project_id": 99, "label_map_id": 1, "name": "x"})
    except sqlite3.IntegrityError as exc:
        assert "FOREIGN KEY" in str(exc)
    else:
        raise AssertionError("a class of a missing project was stored")
