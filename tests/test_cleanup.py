"""Leftovers of interrupted work (issue 12, item 8): a process killed in the middle of an export,
an import, an ingest or a model upload leaves staged files; start-up removes them and nothing
the database points to."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from backend import cleanup, dataset_versions, model_registry
from tests.helpers import image_bytes, voc_xml

ROOT = Path(__file__).resolve().parents[1]


def interrupted(data_dir, code: str) -> None:
    """Run `code` in a process that dies (os._exit, like kill -9: no cleanup runs) where it
    calls `die()`; the data folder is `data_dir`."""
    script = textwrap.dedent("""
        import os, sys
        from backend import auth, db as database
        db = database.connect()
        admin = auth.get_user(db, "admin")
        def die(*args, **kwargs):
            os._exit(9)
    """) + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "BOXWISE_DATA": str(data_dir)}, timeout=300)
    assert done.returncode == 9, done.stderr


def age(paths, seconds=cleanup.LEFTOVER_SECONDS + 60) -> None:
    then = time.time() - seconds
    for path in paths:
        for inside in [path, *path.rglob("*")] if path.is_dir() else [path]:
            os.utime(inside, (then, then))


def test_interrupted_export_import_and_ingest_leave_nothing_after_start_up(db, admin, project, labeled,
                                                                          data_dir):
    kept = dataset_versions.create_export(db, admin, project["id"], splits="train=1")
    stored_before = {p for p in (data_dir / "images").rglob("*") if p.is_file()}
    # An export killed just before its folder is moved into place.
    interrupted(data_dir, """
        from backend import dataset_versions
        dataset_versions.os.replace = die
        dataset_versions.create_export(db, admin, 1, splits="train=1")
    """)
    # A zip import killed just before its transaction: images stored, rows never written.
    (data_dir / "set.zip").write_bytes(_zip())
    interrupted(data_dir, """
        from backend import importers
        importers._commit = die
        data = open(os.environ["BOXWISE_DATA"] + "/set.zip", "rb").read()
        importers.import_upload(db, admin, 1, [("set.zip", data)], "voc")
    """)
    # An ingest killed after storing the file, before its row.
    interrupted(data_dir, """
        from backend import images
        from tests.helpers import image_bytes
        images.transaction = die
        images.ingest(db, admin, 1, [("late.png", image_bytes((33, 22), (9, 8, 7), fmt="PNG"))])
    """)
    left = cleanup.leftovers(db, older_than=0)
    assert len([p for p in left if p.name.startswith(".tmp-")]) == 1
    assert len([p for p in left if p.name.startswith(".import-")]) == 1
    orphans = [p for p in left if p.parent.parent == data_dir / "images"]
    assert len(orphans) == 3, left  # two imported images and the ingested one
    assert not set(orphans) & stored_before

    assert cleanup.at_start(db) == []  # fresh: work still running elsewhere keeps its files
    age(left)
    removed = cleanup.at_start(db)
    assert sorted(removed) == sorted(left)
    assert not any(p.exists() for p in left)
    # Nothing the database points to went: every stored image and the finished export remain.
    assert all((data_dir / row["path"]).is_file() for row in db.query("select path from images"))
    assert {p for p in (data_dir / "images").rglob("*") if p.is_file()} == stored_before
    assert (kept.path / "manifest.json").is_file()
    assert cleanup.leftovers(db, older_than=0) == []


def test_interrupted_model_upload_is_removed_and_registered_ones_stay(db, admin, project, data_dir, tmp_path):
    from tests import savedmodels
    export = savedmodels.build_detector(tmp_path / "export")
    zipped = tmp_path / "m.zip"
    subprocess.run(["python3", "-m", "zipfile", "-c", str(zipped), *[str(p) for p in export.iterdir()]],
                   check=True, cwd=export)
    model = model_registry.register_zip(db, admin, project["id"], zipped.read_bytes(), "m.zip")
    interrupted(data_dir, f"""
        from backend import model_registry
        model_registry.register_directory = die
        model_registry.register_zip(db, admin, 1, open({str(zipped)!r}, "rb").read(), "m.zip")
    """)
    [left] = cleanup.leftovers(db, older_than=0)
    assert left.name.startswith("upload-") and not Path(model["path"]).is_relative_to(left)
    age([left])
    assert cleanup.at_start(db) == [left]
    assert Path(model["path"], "saved_model", "saved_model.pb").is_file()


def _zip() -> bytes:
    import io
    import zipfile
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, color in (("p", (1, 90, 2)), ("q", (3, 4, 180))):
            archive.writestr(f"set/{name}.jpg", image_bytes((60, 40), color))
            archive.writestr(f"set/{name}.xml", voc_xml(f"{name}.jpg", (60, 40), [("cat", (1, 2, 30, 39), 0, 0)]))
    return out.getvalue()
