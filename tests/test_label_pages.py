"""The Label, Review and Progress pages through Streamlit's AppTest, on a real SQLite file."""
from __future__ import annotations


import pytest
from streamlit.testing.v1 import AppTest

from backend import annotations, images, labeling
from tests.helpers import button, image_bytes, signed_in


@pytest.fixture
def stocked(db, users, project):
    report = images.ingest(db, users["admin"], project["id"], [
        (f"img{i}.png", image_bytes((320, 240), color=(i * 50, 90, 20), fmt="PNG")) for i in range(3)])
    return [item.image_id for item in report.items]


def cat_id(db, project):
    return next(r["id"] for r in db.query("select id from labels where project_id = ? and name = 'cat'",
                                          [project["id"]]))


def test_label_page_leases_next_image_and_saves_class_changes(db, users, project, stocked):
    at = signed_in(db, "labeler", "pages/label.py")
    assert "3** images in your queue" in at.markdown[0].value
    button(at, "Next image to label").click().run()
    assert not at.exception, at.exception
    image = images.get_image(db, stocked[0])
    assert image["lease_user_id"] == users["labeler"]["id"]
    assert at.markdown[0].value.startswith(f"#### #{stocked[0]} · img0.png · 320×240 px")
    # Boxes come from the canvas in the browser (tests/e2e); here a box already stored is
    # relabeled through the box editor and saved on "Next image to label".
    annotations.save_boxes(db, users["admin"], stocked[0],
                           [{"label_id": cat_id(db, project), "xmin": 10, "ymin": 10, "xmax": 50, "ymax": 60}], 0)
    at.number_input[0].set_value(stocked[0]).run()
    button(at, "Go").click().run()
    assert not at.exception, at.exception
    button(at, "Next box").click().run()  # Tab: selects box 1 for the box editor
    at.selectbox(key=f"label_box_class_{stocked[0]}_0_0").select_index(1).run()
    assert "unsaved changes" in " ".join(c.value for c in at.caption)
    button(at, "Save").click().run()
    assert not at.exception, at.exception
    stored = annotations.get_boxes(db, stocked[0])
    assert [(b["xmin"], b["ymin"], b["xmax"], b["ymax"]) for b in stored] == [(10, 10, 50, 60)]
    assert stored[0]["label_id"] == cat_id(db, project) + 1
    assert images.get_image(db, stocked[0])["version"] == 2
    history = annotations.history(db, stocked[0])
    assert history[0]["username"] == "labeler" and history[0]["kind"] == "boxes"


def test_label_page_flags_a_box_difficult_and_truncated(db, users, project, stocked):
    annotations.save_boxes(db, users["admin"], stocked[0],
                           [{"label_id": cat_id(db, project), "xmin": 10, "ymin": 10, "xmax": 50, "ymax": 60}], 0)
    at = signed_in(db, "labeler", "pages/label.py")
    at.number_input[0].set_value(stocked[0]).run()
    button(at, "Go").click().run()
    button(at, "Next box").click().run()
    at.checkbox(key=f"label_box_difficult_{stocked[0]}_0_0").check().run()
    assert not at.exception, at.exception
    at.checkbox(key=f"label_box_truncated_{stocked[0]}_1_0").check().run()
    button(at, "Save").click().run()
    assert not at.exception, at.exception
    stored = annotations.get_boxes(db, stocked[0])
    assert [(b["difficult"], b["truncated"], b["xmin"], b["ymax"]) for b in stored] == [(1, 1, 10, 60)]
    button(at, "Next box").click().run()
    assert at.checkbox(key=f"label_box_difficult_{stocked[0]}_0_0").value is True  # after the reload


def test_label_page_shows_who_holds_the_lease(db, users, project, stocked):
    labeling.open_image(db, users["reviewer"], stocked[1])
    at = signed_in(db, "labeler", "pages/label.py")
    at.number_input[0].set_value(stocked[1]).run()
    button(at, "Go").click().run()
    assert any(w.value.startswith("This image is leased by reviewer until ") for w in at.warning)


def test_stale_save_offers_reload_or_overwrite(db, users, project, stocked):
    at = signed_in(db, "labeler", "pages/label.py")
    annotations.save_boxes(db, users["admin"], stocked[0],
                           [{"label_id": cat_id(db, project), "xmin": 10, "ymin": 10, "xmax": 50, "ymax": 60}], 0)
    at.number_input[0].set_value(stocked[0]).run()
    button(at, "Go").click().run()
    annotations.save_boxes(db, users["reviewer"], stocked[0], [], 1)  # someone else, meanwhile
    button(at, "Next box").click().run()
    button(at, "Delete box").click().run()
    button(at, "Save").click().run()
    assert at.error[0].value.startswith("image img0.png was changed by reviewer at ")
    assert images.get_image(db, stocked[0])["version"] == 2
    button(at, "Overwrite with my boxes").click().run()
    assert not at.exception, at.exception
    assert images.get_image(db, stocked[0])["version"] == 3


def test_review_page_approves_and_rejects_with_comment(db, users, project, stocked):
    for image_id in stocked[:2]:
        labeling.submit(db, users["labeler"], image_id,
                        [{"label_id": cat_id(db, project), "xmin": 5, "ymin": 5, "xmax": 40, "ymax": 40}], 0)
    at = signed_in(db, "reviewer", "pages/review.py")
    assert "2 submitted images wait for review" in at.caption[0].value
    button(at, "Next image to review").click().run()
    assert not at.exception, at.exception
    button(at, "Approve").click().run()
    assert images.get_image(db, stocked[0])["status"] == "reviewed"
    button(at, "Reject and send back").click().run()
    assert at.error[0].value == "say what is wrong: a rejection needs a comment for the labeler"
    at.text_area[0].input("the cat's tail is outside the box").run()
    button(at, "Reject and send back").click().run()
    rejected = images.get_image(db, stocked[1])
    assert (rejected["status"], rejected["review_comment"]) == ("rejected", "the cat's tail is outside the box")
    assert rejected["reviewed_by"] == users["reviewer"]["id"]


def test_dashboard_page_shows_progress_and_assigns(db, users, project, stocked):
    labeling.submit(db, users["labeler"], stocked[0],
                    [{"label_id": cat_id(db, project), "xmin": 5, "ymin": 5, "xmax": 40, "ymax": 40}], 0)
    labeling.open_image(db, users["labeler"], stocked[1])
    at = signed_in(db, "admin", "pages/dashboard.py")
    values = {m.label: m.value for m in at.metric}
    assert values["Images"] == "3" and values["Boxes"] == "1"
    assert values["Done (labeled or reviewed)"] == "33%"
    at.text_input[0].input(f"{stocked[1]}-{stocked[2]}")
    at.selectbox[-1].select(users["labeler"]["id"])
    next(b for b in at.button if b.label == "Assign").click().run()
    assert not at.exception, at.exception
    assert [images.get_image(db, i)["assignee_id"] for i in stocked] == [None, users["labeler"]["id"],
                                                                         users["labeler"]["id"]]
    button(at, "Release all leases").click().run()
    assert labeling.leases(db, project["id"]) == []


def go_to(at: AppTest, image_id: int) -> None:
    at.number_input[0].set_value(image_id).run()
    button(at, "Go").click().run()
    assert not at.exception, at.exception


def test_model_drafts_are_shown_and_accepted(db, users, project, stocked):
    db["annotations"].insert({"image_id": stocked[0], "label_id": cat_id(db, project), "xmin": 20, "ymin": 30,
                              "xmax": 120, "ymax": 130, "source": "model", "score": 0.87})
    at = signed_in(db, "labeler", "pages/label.py")
    go_to(at, stocked[0])
    table = at.dataframe[0].value
    assert list(table["source"]) == ["draft"] and list(table["score"]) == [0.87]
    assert "1 model drafts (dashed)" in [c.value for c in at.caption]
    button(at, "Accept all drafts").click().run()
    assert [(b["source"], b["score"], b["xmin"]) for b in annotations.get_boxes(db, stocked[0])] == \
        [("human", None, 20.0)]
    assert annotations.history(db, stocked[0])[-1]["kind"] == "accept_drafts"


def test_copy_boxes_from_previous_image_and_no_objects(db, users, project, stocked):
    annotations.save_boxes(db, users["admin"], stocked[0],
                           [{"label_id": cat_id(db, project), "xmin": 10, "ymin": 10, "xmax": 50, "ymax": 60}], 0)
    at = signed_in(db, "labeler", "pages/label.py")
    go_to(at, stocked[0])
    go_to(at, stocked[1])
    button(at, f"Copy boxes from previous image (#{stocked[0]})").click().run()
    button(at, "Save").click().run()
    assert [(b["xmin"], b["ymax"]) for b in annotations.get_boxes(db, stocked[1])] == [(10.0, 60.0)]
    go_to(at, stocked[2])
    button(at, "No objects").click().run()
    assert not at.exception, at.exception
    marked = images.get_image(db, stocked[2])
    assert (marked["status"], marked["no_objects"], marked["labeled_by"]) == \
        ("labeled", 1, users["labeler"]["id"])


def test_skip_moves_on_and_an_empty_queue_explains_itself(db, users, project, stocked):
    import datetime
    at = signed_in(db, "labeler", "pages/label.py")
    button(at, "Next image to label").click().run()
    button(at, "Skip").click().run()
    assert at.error[0].value == "Say why the image is skipped (the box beside Skip), then press Skip."
    at.text_input(key=f"label_skip_{stocked[0]}").input("blurred").run()
    button(at, "Skip").click().run()
    assert not at.exception, at.exception
    assert images.get_image(db, stocked[0])["status"] == "skipped"
    assert at.markdown[0].value.startswith(f"#### #{stocked[1]} · img1.png")  # moved on
    at.text_input(key=f"label_skip_{stocked[1]}").input("not ours").run()
    labeling.open_image(db, users["reviewer"], stocked[2])  # the last one is someone else's
    button(at, "Skip").click().run()
    until = images.get_image(db, stocked[2])["lease_expires_at"]
    assert at.info[0].value == ("1 image waits, leased by reviewer until "
                                f"{datetime.datetime.fromtimestamp(until).strftime('%H:%M')}.")


def test_review_page_says_who_holds_the_only_waiting_image(db, users, project, stocked):
    import datetime
    labeling.submit(db, users["labeler"], stocked[0],
                    [{"label_id": cat_id(db, project), "xmin": 5, "ymin": 5, "xmax": 40, "ymax": 40}], 0)
    labeling.open_image(db, users["labeler"], stocked[0])  # still open in the labeler's browser
    at = signed_in(db, "reviewer", "pages/review.py")
    assert "1 submitted images wait for review" in at.caption[0].value
    button(at, "Next image to review").click().run()
    until = images.get_image(db, stocked[0])["lease_expires_at"]
    assert at.info[0].value == ("1 image waits, leased by labeler until "
                                f"{datetime.datetime.fromtimestamp(until).strftime('%H:%M')}.")


def test_the_picture_of_the_image_n_opens_next_is_rendered_ahead(db, users, project, stocked):
    """Opening an image starts a thread that renders, a second later, the canvas and overview
    pictures of the image N would open next (into the disk cache N reads them from)."""
    import threading

    from backend import canvas, coordinates, settings
    at = signed_in(db, "labeler", "pages/label.py")
    button(at, "Next image to label").click().run()
    assert not at.exception, at.exception
    upcoming = images.get_image(db, stocked[1])
    assert upcoming["lease_user_id"] is None  # looked at, not leased
    for thread in threading.enumerate():
        if thread.name == "boxwise-prepare-display":
            thread.join(timeout=30)
    folder = settings.subdir("cache") / "display" / upcoming["sha256"][:2]
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(upcoming["sha256"])) == \
        [f"{upcoming['sha256']}-240x180.jpg", f"{upcoming['sha256']}-960x720.jpg"]
    assert at.session_state["label_prepared"] == stocked[1]
    cached = (folder / f"{upcoming['sha256']}-960x720.jpg").read_bytes()
    # N opens that image and shows that picture.
    button(at, "Next image to label").click().run()
    assert at.markdown[0].value.startswith(f"#### #{stocked[1]} · img1.png")
    assert canvas.display_image(upcoming, coordinates.display_fit(320, 240)) == cached
