"""The Datasets and TFRecord browser pages through Streamlit's AppTest, and the upload import
backend the Upload page's "Import annotations" tab calls."""
from __future__ import annotations

import io
import zipfile


from backend import dataset_versions, importers
from tests.helpers import voc_xml
from tests.helpers import image_bytes, signed_in


def test_reviewer_exports_a_version_from_the_datasets_page(db, users, project, labeled):
    at = signed_in(db, "reviewer", "pages/dataset.py")
    at.number_input[1].set_value(0.5)
    at.number_input[0].set_value(0.5)
    at.button[0].click().run()  # the form's Export
    assert not at.exception, at.exception
    [version] = dataset_versions.list_versions(db, project["id"])
    assert version.counts["total_images"] == 6 and version.params["splits"]["train"] == 0.5
    assert any("Dataset version 1 written" in s.value for s in at.success)
    next(b for b in at.button if b.label == "Prepare zip for download").click().run()
    assert not at.exception, at.exception
    assert at.get("download_button")


def test_viewer_browses_a_dataset_version_without_export_rights(db, users, project, labeled):
    dataset_versions.create_export(db, users["admin"], project["id"], splits="train=1")
    at = signed_in(db, "viewer", "pages/tfrecords.py")
    assert [o for o in at.radio[0].options] == ["A dataset version"]  # viewers upload nothing
    at.radio[0].set_value("A dataset version").run()
    assert not at.exception, at.exception
    assert [m.value for m in at.metric][:4] == ["6", "7", "1", "0"]
    assert len(at.get("image")) == 6  # one page of examples, boxes drawn


def test_uploaded_zip_of_a_labelimg_folder_imports(db, admin, project):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("set/one.jpg", image_bytes((60, 40)))
        archive.writestr("set/one.xml", voc_xml("one.jpg", (60, 40), [("cat", (1, 2, 30, 39), 0, 0)]))
    report = importers.import_upload(db, admin, project["id"], [("set.zip", buffer.getvalue())], "voc")
    assert report.ok, report.errors
    assert report.summary() == "imported 1 images with 1 boxes, skipped 0"
    bad = io.BytesIO()
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("../escape.xml", "<annotation/>")
    try:
        importers.import_upload(db, admin, project["id"], [("bad.zip", bad.getvalue())], "voc")
    except Exception as exc:  # noqa: BLE001
        assert "unsafe path" in str(exc)
    else:
        raise AssertionError("an unsafe zip path was accepted")


def test_upload_page_shows_the_import_annotations_tab(db, users, project):
    at = signed_in(db, "admin", "pages/upload.py")
    assert any(b.label == "Import" for b in at.button)
    assert any("Nothing changes unless" in m.value for m in at.markdown)


def test_viewer_sees_versions_but_no_export_form(db, users, project, labeled):
    dataset_versions.create_export(db, users["admin"], project["id"])
    at = signed_in(db, "viewer", "pages/dataset.py")
    assert not any(b.label == "Export" for b in at.button)
    assert at.subheader[0].value == "Dataset versions"
    assert len(at.get("vega_lite_chart")) == 1  # the class balance chart
