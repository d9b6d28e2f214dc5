"""No HTML from user strings (issue 12, item 4): class names, file names and project names reach
the page as text. An admin's class named `<style>` must not restyle the Label page for everyone."""
from __future__ import annotations

from backend import images, projects
from tests.helpers import button, image_bytes, signed_in

HOSTILE = ["<b id=x>", "<style>"]


def test_hostile_class_names_are_escaped_on_the_label_page(db, users):
    project = projects.create_project(db, users["admin"], "<i>tags</i>", HOSTILE + ["cat"])
    images.ingest(db, users["admin"], project["id"], [("<img src=x>.png", image_bytes(fmt="PNG"))])
    at = signed_in(db, "labeler", "pages/label.py")
    button(at, "Next image to label").click().run()
    assert not at.exception, at.exception
    header = at.markdown[0].value
    assert "\\<img src=x\\>.png" in header and "<img" not in header.replace("\\<img", "")
    caption = next(c.value for c in at.caption if c.value.startswith("Draw with the mouse"))
    assert "**\\<b id=x\\>**" in caption
    labels = [b.label for b in at.button]
    assert "1 \\<b id=x\\>" in labels and "2 \\<style\\>" in labels
    page = "".join(e.proto.body for e in at.get("html")) + "".join(m.value for m in at.markdown)
    for raw in HOSTILE + ["<img src=x>", "<i>tags</i>"]:
        assert raw not in page, raw


def test_a_user_name_holding_a_lease_is_shown_as_text_on_the_label_page(db, users):
    from backend import auth, labeling
    project = projects.create_project(db, users["admin"], "pets", ["cat"])
    report = images.ingest(db, users["admin"], project["id"], [("a.png", image_bytes(fmt="PNG"))])
    image_id = report.items[0].image_id
    hostile = auth.add_user(db, users["admin"], "![t](http://e/t.png)", "hostile-password", "labeler")
    labeling.open_image(db, hostile, image_id)
    at = signed_in(db, "labeler", "pages/label.py")
    at.number_input[0].set_value(image_id).run()
    button(at, "Go").click().run()
    assert not at.exception, at.exception
    [warning] = [w.value for w in at.warning if w.value.startswith("This image is leased by ")]
    assert warning.startswith("This image is leased by !\\[t\\](http://e/t.png) until "), warning


def test_a_conflict_naming_another_user_is_shown_as_text(db, users):
    from backend import annotations, auth
    project = projects.create_project(db, users["admin"], "pets", ["cat"])
    image_id = images.ingest(db, users["admin"], project["id"], [("a_b.png", image_bytes(fmt="PNG"))]).items[0].image_id
    cat = projects.list_labels(db, project["id"])[0]["id"]
    annotations.save_boxes(db, users["admin"], image_id,
                           [{"label_id": cat, "xmin": 10, "ymin": 10, "xmax": 50, "ymax": 40}], 0)
    hostile = auth.add_user(db, users["admin"], "[x](http://e/)", "hostile-password", "reviewer")
    at = signed_in(db, "labeler", "pages/label.py")
    at.number_input[0].set_value(image_id).run()
    button(at, "Go").click().run()
    annotations.save_boxes(db, hostile, image_id, [], 1)  # meanwhile
    button(at, "Next box").click().run()
    button(at, "Delete box").click().run()
    button(at, "Save").click().run()
    assert not at.exception, at.exception
    assert at.error[0].value.startswith("image a\\_b.png was changed by \\[x\\](http://e/) at "), at.error[0].value


def test_an_import_report_quotes_names_from_the_uploaded_files_as_text(db, users):
    projects.create_project(db, users["admin"], "pets", ["cat"])
    at = signed_in(db, "reviewer", "pages/upload.py")
    at.selectbox[-1].set_value("coco")
    at.file_uploader[1].set_value([("![x](x.png).json", b"{not json", "application/json")])  # (Import tab)
    next(b for b in at.button if b.label == "Import").click().run()
    assert not at.exception, at.exception
    shown = [m.value for m in [*at.error, *at.info, *at.success]]
    assert any("!\\[x\\](x.png).json: not valid JSON" in m for m in shown), shown
    assert not any("[x](" in m for m in shown), shown
    assert db["images"].count == 0


def test_a_starting_points_name_is_shown_as_text_on_its_remove_button(db, users, data_dir):
    import json
    import time
    projects.create_project(db, users["admin"], "pets", ["cat"])  # (the page needs a project)
    db["starting_points"].insert({"name": "![x](x.png)", "sha256": "0" * 64, "path": str(data_dir / "zoo" / "x"),
                                  "filename": "x.tar.gz", "architecture": "ssd", "height": 320, "width": 320,
                                  "num_classes": 1, "classes": json.dumps({"1": "cat"}), "size_bytes": 0,
                                  "restore": "{}", "created_at": time.time()})
    at = signed_in(db, "reviewer", "pages/zoo.py")
    assert not at.exception, at.exception
    assert "Remove !\\[x\\](x.png)" in [b.label for b in at.button]


def test_the_configs_page_lists_a_configs_problems_as_text(db, users):
    from tests.helpers import CONFIG
    projects.create_project(db, users["admin"], "pets", ["cat"])
    at = signed_in(db, "reviewer", "pages/config.py")
    text = CONFIG.replace('label_map_path: "PATH_TO_BE_CONFIGURED"', 'label_map_path: "![x](x.png)"', 1)
    at.text_area(key="config_text").input(text).run()
    button(at, "Validate").click().run()
    assert not at.exception, at.exception
    [listed] = [e.value for e in at.error]
    assert "- line 17: train\\_input\\_reader.label\\_map\\_path: label map '!\\[x\\](x.png)' does not exist" \
        in listed.splitlines(), listed


def test_a_projects_description_is_shown_as_text_on_the_home_page(db, users):
    projects.create_project(db, users["admin"], "pets", ["cat"], description="see ![x](x.png) <b>now</b>")
    at = signed_in(db, "viewer", "pages/home.py")
    assert not at.exception, at.exception
    assert "see !\\[x\\](x.png) \\<b\\>now\\</b\\>" in [m.value for m in at.markdown]
