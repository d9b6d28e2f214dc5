"""Record sets behind a URL, read through tf.io.gfile. TensorFlow's in-memory `ram://` file
system stands in for gs:// (no network here); the code path is the same for every scheme."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend import dataset_versions, images, importers, paths, projects
from backend.__main__ import main
from backend.errors import NotFound
from backend.formats import tfrecord_checks, tfrecord_framing, tfrecord_preview
from backend.auth import CLI_ACTOR
from tests.formats.tfod import example, write_records
from tests.helpers import good_features as good


def upload(folder: Path, url: str, names: list[str] | None = None) -> None:
    """Copy the files of a local folder to `url` (a ram:// folder)."""
    import tensorflow as tf
    tf.io.gfile.makedirs(url)
    for path in sorted(folder.iterdir()):
        if path.is_file() and (names is None or path.name in names):
            with tf.io.gfile.GFile(f"{url}/{path.name}", "wb") as handle:
                handle.write(path.read_bytes())


@pytest.fixture
def remote_export(db, admin, project, labeled, request):
    version = dataset_versions.create_export(db, admin, project["id"], shards=3, splits="train=1")
    url = f"ram://boxwise-{request.node.name}"
    upload(version.path, url)
    return version, url


def test_a_sharded_set_at_a_url_resolves_by_glob_folder_and_at_n(remote_export):
    _, url = remote_export
    shards = [f"{url}/train.record-0000{i}-of-00003" for i in range(3)]
    assert tfrecord_framing.resolve(f"{url}/train.record-?????-of-00003") == shards
    assert tfrecord_framing.resolve(url) == shards                      # the folder: its record files
    assert tfrecord_framing.resolve(f"{url}/train.record@3") == shards
    assert [p.name for p in tfrecord_framing.resolve(shards[1])] == ["train.record-00001-of-00003"]
    with pytest.raises(NotFound, match="no TFRecord files match 'ram://nowhere/x-\\*'"):
        tfrecord_framing.resolve("ram://nowhere/x-*")


def test_cli_inspects_and_extracts_a_set_at_a_url_like_a_local_one(remote_export, capsys, tmp_path):
    version, url = remote_export
    assert main(["tfrecord", "inspect", f"{url}/train.record-*", "--json"]) == 0
    remote_report = json.loads(capsys.readouterr().out)
    assert main(["tfrecord", "inspect", version.shard_globs["train"], "--json"]) == 0
    local_report = json.loads(capsys.readouterr().out)
    assert remote_report["label_map"] == f"{url}/label_map.pbtxt"   # found beside the records
    for key in ("examples", "boxes", "negatives", "classes", "problems"):
        assert remote_report[key] == local_report[key], key
    assert remote_report["examples"] == 6 and remote_report["boxes"] == 7
    assert main(["tfrecord", "extract", f"{url}/train.record@3", str(tmp_path / "out")]) == 0
    local = tfrecord_preview.extract(version.shard_globs["train"], tmp_path / "local")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(local.written)
    for name in local.written:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_gzip_records_at_a_url(tmp_path):
    write_records(tmp_path / "train.record.gz", [example(good(b"g1")), example(good(b"g2", size=(20, 10)))],
                  compression="GZIP")
    upload(tmp_path, "ram://boxwise-gzip")
    result = tfrecord_checks.inspect("ram://boxwise-gzip/train.record.gz")
    assert result.compressed == {"ram://boxwise-gzip/train.record.gz": True}
    assert result.examples == 2 and result.problems == []


def test_import_from_a_url_brings_the_images_and_boxes_back(db, admin, project, remote_export):
    _, url = remote_export
    target = projects.create_project(db, admin, "from-url")
    report = importers.import_annotations(db, CLI_ACTOR, target["id"], f"{url}/train.record-*", "tfrecord",
                                          create_classes=True)
    assert report.ok, report.errors
    copied = list(db.query("select * from images where project_id = ?", [target["id"]]))
    original = list(db.query("select * from images where project_id = ? and status != 'new'", [project["id"]]))
    assert sorted(r["sha256"] for r in copied) == sorted(r["sha256"] for r in original)
    assert images.read_image_bytes(copied[0]) == images.read_image_bytes(
        next(r for r in original if r["sha256"] == copied[0]["sha256"]))
    count = "select count(*) from annotations join images on images.id = annotations.image_id where project_id = ?"
    assert db.execute(count, [target["id"]]).fetchone()[0] == db.execute(count, [project["id"]]).fetchone()[0] == 7


def test_an_unavailable_scheme_is_named_and_viewers_may_not_open_urls(users, capsys):
    assert main(["tfrecord", "inspect", "s3://bucket/train.record-*"]) == 4  # not found: no such file system
    err = capsys.readouterr().err
    assert "this TensorFlow cannot read s3:// paths" in err and "tensorflow-io" in err
    with pytest.raises(PermissionError, match=r"viewer \(viewer\) may not open URLs \(reviewers and admins may\)"):
        paths.confine_pattern("gs://bucket/train.record-*", users["viewer"])
    # reviewers may
    assert paths.confine_pattern("gs://bucket/train.record-*", users["reviewer"]) == "gs://bucket/train.record-*"
