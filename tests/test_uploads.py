"""Nothing a user uploads is ever executable (issue 12, item 1), and TFRecord browser uploads are
role-checked, capped and cleaned up (item 3)."""
from __future__ import annotations

import io
import os
import stat
import time
import zipfile

import pytest

from backend import images, importers, model_registry, record_browser
from backend.errors import Invalid
from tests import savedmodels
from tests.helpers import add_image, voc_xml
from tests.helpers import image_bytes

EXECUTABLE = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


def _zip(entries: dict[str, bytes]) -> bytes:
    """A zip whose entries all declare mode 0o755 (what `zip` keeps of a script's exec bit)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | 0o755) << 16
            archive.writestr(info, data)
    return out.getvalue()


def test_no_uploaded_file_is_stored_executable(db, admin, project, data_dir, tmp_path):
    images.ingest(db, admin, project["id"], [("a.jpg", image_bytes((40, 30)))])
    report = importers.import_upload(db, admin, project["id"], [("set.zip", _zip({
        "set/b.jpg": image_bytes((60, 40), (1, 200, 3)),
        "set/b.xml": voc_xml("b.jpg", (60, 40), [("cat", (1, 2, 30, 39), 0, 0)]).encode()}))], "voc")
    assert report.ok, report.errors
    folder = record_browser.save_uploads(admin, [("train.record", b"\x00" * 16), ("run.sh", b"#!/bin/sh\nid\n")])
    export = savedmodels.build_detector(tmp_path / "export")
    model_registry.register_zip(db, admin, project["id"], _zip({
        str(p.relative_to(export)): p.read_bytes() for p in export.rglob("*") if p.is_file()}), "m.zip")
    stored = [p for p in data_dir.rglob("*") if p.is_file() and p.name != "boxwise.db"]
    assert len(list((data_dir / "images").rglob("*.*"))) == 2 and sorted(os.listdir(folder)) == [".owner", "run.sh.tfrecord", "train.record"]
    assert any(p.name == "saved_model.pb" for p in stored)
    assert [str(p) for p in stored if p.stat().st_mode & EXECUTABLE] == []


def test_record_uploads_need_ingest_and_are_capped_and_leave_nothing_when_refused(users, data_dir, monkeypatch):
    for role in ("viewer", "labeler"):
        with pytest.raises(PermissionError, match=f"{role} \\({role}\\) may not ingest"):
            record_browser.save_uploads(users[role], [("a.record", b"x")])
    monkeypatch.setenv("BOXWISE_MAX_RECORD_UPLOAD_BYTES", "10")
    with pytest.raises(Invalid, match="limited to 10 bytes in all"):
        record_browser.save_uploads(users["reviewer"], [("a.record", b"x" * 11)])
    monkeypatch.delenv("BOXWISE_MAX_RECORD_UPLOAD_BYTES")
    with pytest.raises(Invalid, match="bad file name '.hidden'"):
        record_browser.save_uploads(users["reviewer"], [("a.record", b"x"), (".hidden", b"y")])
    assert list((data_dir / "uploads" / "tfrecords").iterdir()) == []  # the half-written folder is gone


def test_old_record_uploads_and_extracted_zips_are_removed(users, data_dir):
    old = record_browser.save_uploads(users["reviewer"], [("a.record", b"x")])
    zipped = data_dir / "uploads" / "extracted" / "images-old.zip"
    zipped.parent.mkdir(parents=True, exist_ok=True)
    zipped.write_bytes(b"PK")
    day_ago = time.time() - record_browser.UPLOAD_TTL_SECONDS - 60
    for path in (old, zipped):
        os.utime(path, (day_ago, day_ago))
    fresh = record_browser.save_uploads(users["reviewer"], [("b.record", b"y")])  # each upload sweeps
    assert not os.path.exists(old) and not zipped.exists() and os.path.isdir(fresh)


def test_extracted_zips_download_and_nothing_else_does(db, users, project, data_dir, tmp_path):
    from backend import dataset_versions
    add_image(db, users["admin"], project["id"], "a.jpg", boxes=[("cat", 1, 2, 30, 40)])
    version = dataset_versions.create_export(db, users["admin"], project["id"], splits="train=1")
    path, result = record_browser.extract_zip(users["reviewer"], version.shard_globs["train"], False)
    name, data = record_browser.zip_download(users["reviewer"], path)
    assert name == path.name and zipfile.ZipFile(io.BytesIO(data)).namelist() == ["a.jpg"]
    (tmp_path / "secret").write_text("x")
    with pytest.raises(Invalid, match="only zips extracted by the TFRecord browser"):
        record_browser.zip_download(users["reviewer"], tmp_path / "secret")
