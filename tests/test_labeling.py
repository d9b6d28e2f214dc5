"""Queues, leases, assignment, the status workflow and concurrent saves."""
from __future__ import annotations

import datetime
import threading

import pytest

from backend import annotations, auth, db as database, images, labeling
from backend.errors import Conflict, Invalid, NotFound
from tests.helpers import image_bytes


def add_images(db, actor, project, count, size=(64, 48)):
    files = [(f"img{i:03d}.png", image_bytes(size, color=(i, 255 - i, (7 * i) % 256), fmt="PNG"))
             for i in range(count)]
    report = images.ingest(db, actor, project["id"], files)
    return [item.image_id for item in report.items]


def label_id(db, project, name):
    return database.one(db, "select id from labels where project_id = ? and name = ?",
                        [project["id"], name])["id"]


def box(label, x0=5, y0=6, x1=30, y1=40, **extra):
    return {"label_id": label, "xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1, **extra}


@pytest.fixture
def two_labelers(db, users):
    second = auth.add_user(db, users["admin"], "labeler2", "labeler2-password", "labeler")
    return users["labeler"], second


# ---------------------------------------------------------------- leases


def test_next_image_leases_it_and_never_hands_it_to_another_labeler(db, users, project, two_labelers):
    ids = add_images(db, users["admin"], project, 3)
    first, second = two_labelers
    mine = labeling.next_image(db, first, project["id"])
    assert mine["id"] == ids[0]
    assert mine["lease_user_id"] == first["id"]
    assert mine["lease_expires_at"] == pytest.approx(database.now() + labeling.LEASE_SECONDS, abs=5)
    theirs = labeling.next_image(db, second, project["id"])
    assert theirs["id"] == ids[1]
    # Asking again gives each their own leased image back, not the other's.
    assert labeling.next_image(db, first, project["id"])["id"] == ids[0]
    assert labeling.next_image(db, second, project["id"])["id"] == ids[1]


def test_peek_next_image_is_what_next_image_serves_without_leasing_it(db, users, project, two_labelers):
    ids = add_images(db, users["admin"], project, 3)
    first, second = two_labelers
    assert labeling.peek_next_image(db, first, project["id"])["id"] == ids[0]
    assert images.get_image(db, ids[0])["lease_user_id"] is None
    # The other labeler is served the same image: the peek held nothing.
    assert labeling.next_image(db, second, project["id"])["id"] == ids[0]
    assert labeling.peek_next_image(db, first, project["id"])["id"] == ids[1]
    assert labeling.peek_next_image(db, first, project["id"], exclude=[ids[1]])["id"] == ids[2]
    assert labeling.next_image(db, first, project["id"], exclude=[ids[1]])["id"] == ids[2]
    assert labeling.peek_next_image(db, first, project["id"], exclude=[ids[1], ids[2]]) is None
    with pytest.raises(PermissionError):
        labeling.peek_next_image(db, users["viewer"], project["id"])


def test_open_image_shows_who_holds_the_lease(db, users, project, two_labelers):
    ids = add_images(db, users["admin"], project, 1)
    first, second = two_labelers
    opened = labeling.open_image(db, first, ids[0])
    assert opened["mine"] is True and opened["lease"]["username"] == "labeler"
    other = labeling.open_image(db, second, ids[0])
    assert other["mine"] is False
    assert other["lease"]["user_id"] == first["id"]
    assert labeling.describe_lease(other["lease"]).startswith("leased by labeler until ")
    assert images.get_image(db, ids[0])["lease_user_id"] == first["id"]


def test_expired_lease_is_handed_out_again(db, users, project, two_labelers):
    ids = add_images(db, users["admin"], project, 2)
    first, second = two_labelers
    labeling.next_image(db, first, project["id"], seconds=-1)  # a lease that already ran out
    assert labeling.lease_holder(db, images.get_image(db, ids[0])) is None
    got = labeling.next_image(db, second, project["id"])
    assert got["id"] == ids[0]
    assert got["lease_user_id"] == second["id"]
    assert labeling.open_image(db, first, ids[0])["mine"] is False


def test_renew_lease_only_for_its_holder(db, users, project, two_labelers):
    ids = add_images(db, users["admin"], project, 1)
    first, second = two_labelers
    labeling.open_image(db, first, ids[0], seconds=5)
    assert labeling.renew_lease(db, first, ids[0], seconds=300) is True
    assert images.get_image(db, ids[0])["lease_expires_at"] == pytest.approx(database.now() + 300, abs=5)
    assert labeling.renew_lease(db, second, ids[0]) is False
    assert images.get_image(db, ids[0])["lease_user_id"] == first["id"]


def test_admin_releases_leases_labelers_only_their_own(db, users, project, two_labelers):
    ids = add_images(db, users["admin"], project, 3)
    first, second = two_labelers
    labeling.open_image(db, first, ids[0])
    labeling.open_image(db, second, ids[1])
    with pytest.raises(PermissionError):
        labeling.release_lease(db, second, ids[0])
    assert labeling.release_lease(db, first, ids[0]) is True
    assert [row["image_id"] for row in labeling.leases(db, project["id"])] == [ids[1]]
    with pytest.raises(PermissionError):
        labeling.release_leases(db, first, project["id"])
    assert labeling.release_leases(db, users["admin"], project["id"]) == 1
    assert labeling.leases(db, project["id"]) == []


# ---------------------------------------------------------------- assignment and queue order


def test_assigned_images_come_first_and_others_assignments_never(db, users, project, two_labelers):
    ids = add_images(db, users["admin"], project, 6)
    first, second = two_labelers
    assert labeling.assign(db, users["admin"], project["id"], [ids[4], ids[5]], first["id"]) == 2
    labeling.assign(db, users["admin"], project["id"], [ids[0]], second["id"])
    served = []
    for _ in range(6):
        image = labeling.next_image(db, first, project["id"])
        if image is None:
            break
        served.append(image["id"])
        labeling.skip(db, first, image["id"], image["version"], "test")
    assert served == [ids[4], ids[5], ids[1], ids[2], ids[3]]
    events = [e["kind"] for e in annotations.history(db, ids[4])]
    assert events == ["status", "assign"]


def test_only_admins_assign(db, users, project):
    ids = add_images(db, users["admin"], project, 1)
    with pytest.raises(PermissionError):
        labeling.assign(db, users["reviewer"], project["id"], ids, users["labeler"]["id"])
    with pytest.raises(Invalid):
        labeling.assign(db, users["admin"], project["id"], ids, users["viewer"]["id"])
    with pytest.raises(NotFound):
        labeling.assign(db, users["admin"], project["id"], [ids[0], 999], users["labeler"]["id"])
    assert images.get_image(db, ids[0])["assignee_id"] is None


def test_assign_next_and_id_ranges(db, users, project):
    ids = add_images(db, users["admin"], project, 5)
    assert labeling.parse_id_ranges("1-3, 5") == [1, 2, 3, 5]
    with pytest.raises(Invalid):
        labeling.parse_id_ranges("3-1")
    assert labeling.assign_next(db, users["admin"], project["id"], users["labeler"]["id"], 2) == ids[:2]
    assert labeling.assign_next(db, users["admin"], project["id"], users["labeler"]["id"], 2) == ids[2:4]
    assert labeling.queue_size(db, users["labeler"], project["id"]) == 5


def test_uncertain_order_serves_most_uncertain_first(db, users, project):
    ids = add_images(db, users["admin"], project, 4)
    for image_id, value in zip(ids, [0.1, None, 0.9, 0.5]):
        db["images"].update(image_id, {"uncertainty": value})
    order = []
    for _ in range(4):
        image = labeling.next_image(db, users["labeler"], project["id"], order="uncertain",
                                    exclude=order)
        order.append(image["id"])
    assert order == [ids[2], ids[3], ids[0], ids[1]]
    with pytest.raises(Invalid):
        labeling.next_image(db, users["labeler"], project["id"], order="random")


def test_next_image_query_uses_indexes(db, users, project):
    add_images(db, users["admin"], project, 2)
    for number, (where, params) in enumerate(labeling._queue_tiers(project["id"], users["labeler"]["id"])):
        for order in ("id", "uncertain") if number else ("id",):
            tail = "uncertainty desc, id" if order == "uncertain" else "id"
            plan = " ".join(r["detail"] for r in db.query(
                f"explain query plan select id from images where {where} and "
                f"(lease_user_id is null or lease_expires_at <= 0) order by {tail} limit 1", params))
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
            assert "TEMP B-TREE" not in plan, plan


def test_rejected_image_goes_back_to_its_labeler_first(db, users, project, two_labelers):
    ids = add_images(db, users["admin"], project, 3)
    first, second = two_labelers
    cat = label_id(db, project, "cat")
    image = images.get_image(db, ids[2])
    labeling.open_image(db, first, ids[2])
    image = labeling.submit(db, first, ids[2], [box(cat)], image["version"])
    assert image["status"] == "labeled" and image["labeled_by"] == first["id"]
    image = labeling.reject(db, users["reviewer"], ids[2], image["version"], "box too loose")
    assert image["status"] == "rejected" and image["review_comment"] == "box too loose"
    assert labeling.next_image(db, second, project["id"])["id"] == ids[0]
    assert labeling.next_image(db, first, project["id"])["id"] == ids[2]


def test_rejected_image_nobody_labeled_goes_back_into_the_shared_queue(db, users, project, two_labelers):
    """Imported and demo images are `labeled` without a labeler: rejected, they still come back."""
    ids = add_images(db, users["admin"], project, 2)
    cat = label_id(db, project, "cat")
    image = annotations.save_boxes(db, users["admin"], ids[1], [box(cat)], 0, status="labeled")
    assert image["labeled_by"] is None
    image = labeling.reject(db, users["reviewer"], ids[1], image["version"], "missed a cat")
    first, _ = two_labelers
    assert labeling.queue_size(db, first, project["id"]) == 2
    served = [labeling.next_image(db, first, project["id"], exclude=[ids[0]])]
    assert served[0]["id"] == ids[1] and served[0]["status"] == "rejected"


# ---------------------------------------------------------------- statuses


def test_status_workflow_records_every_change(db, users, project):
    ids = add_images(db, users["admin"], project, 1)
    labeler, reviewer = users["labeler"], users["reviewer"]
    cat = label_id(db, project, "cat")
    image = images.get_image(db, ids[0])
    image = annotations.save_boxes(db, labeler, ids[0], [box(cat)], image["version"])
    assert image["status"] == "in_progress" and image["version"] == 1
    image = labeling.submit(db, labeler, ids[0], None, image["version"])
    assert (image["status"], image["version"], image["labeled_by"]) == ("labeled", 2, labeler["id"])
    with pytest.raises(PermissionError):
        labeling.approve(db, labeler, ids[0], image["version"])
    with pytest.raises(Invalid):
        labeling.reject(db, reviewer, ids[0], image["version"], "  ")
    image = labeling.approve(db, reviewer, ids[0], image["version"])
    assert (image["status"], image["reviewed_by"]) == ("reviewed", reviewer["id"])
    statuses = [(e["before"]["status"], e["after"]["status"], e["username"])
                for e in reversed(annotations.history(db, ids[0])) if e["kind"] == "status"]
    assert statuses == [("new", "in_progress", "labeler"), ("in_progress", "labeled", "labeler"),
                        ("labeled", "reviewed", "reviewer")]


def test_submit_needs_boxes_or_no_objects(db, users, project):
    ids = add_images(db, users["admin"], project, 2)
    labeler = users["labeler"]
    with pytest.raises(Invalid, match="no objects"):
        labeling.submit(db, labeler, ids[0], [], 0)
    image = labeling.mark_no_objects(db, labeler, ids[0], 0)
    assert (image["status"], image["no_objects"]) == ("labeled", 1)
    assert annotations.get_boxes(db, ids[0]) == []
    cat = label_id(db, project, "cat")
    image = annotations.save_boxes(db, labeler, ids[1], [box(cat)], 0)
    with pytest.raises(Invalid, match="delete them"):
        labeling.mark_no_objects(db, labeler, ids[1], image["version"])


def test_skip_needs_a_reason_and_leaves_the_queue(db, users, project):
    ids = add_images(db, users["admin"], project, 1)
    labeler = users["labeler"]
    with pytest.raises(Invalid):
        labeling.skip(db, labeler, ids[0], 0, "")
    image = labeling.skip(db, labeler, ids[0], 0, "too blurred")
    assert (image["status"], image["skip_reason"]) == ("skipped", "too blurred")
    assert labeling.next_image(db, labeler, project["id"]) is None
    assert labeling.next_for_review(db, users["reviewer"], project["id"]) is None


def test_viewer_cannot_label_or_take_leases(db, users, project):
    ids = add_images(db, users["admin"], project, 1)
    viewer = users["viewer"]
    with pytest.raises(PermissionError):
        labeling.next_image(db, viewer, project["id"])
    with pytest.raises(PermissionError):
        annotations.save_boxes(db, viewer, ids[0], [], 0)
    assert labeling.open_image(db, viewer, ids[0])["lease"] is None


def test_review_queue_serves_submitted_images_in_order(db, users, project):
    ids = add_images(db, users["admin"], project, 3)
    cat = label_id(db, project, "cat")
    for image_id in (ids[2], ids[1]):
        labeling.submit(db, users["labeler"], image_id, [box(cat)], 0)
    got = labeling.next_for_review(db, users["reviewer"], project["id"])
    assert got["id"] == ids[1] and got["lease_user_id"] == users["reviewer"]["id"]
    assert labeling.next_for_review(db, users["admin"], project["id"])["id"] == ids[2]


def test_filters_find_images_by_status_class_labeler_and_assignee(db, users, project):
    ids = add_images(db, users["admin"], project, 4)
    cat, dog = label_id(db, project, "cat"), label_id(db, project, "dog")
    labeling.submit(db, users["labeler"], ids[0], [box(cat)], 0)
    annotations.save_boxes(db, users["reviewer"], ids[1], [box(dog)], 0)
    labeling.assign(db, users["admin"], project["id"], [ids[3]], users["labeler"]["id"])
    find = lambda **f: [r["id"] for r in labeling.find_images(db, project["id"], **f)]  # noqa: E731
    assert find(status="labeled") == [ids[0]]
    assert find(label_id=dog) == [ids[1]]
    assert find(labeler_id=users["labeler"]["id"]) == [ids[0]]
    assert find(assignee_id=users["labeler"]["id"]) == [ids[3]]
    assert find(status="new") == [ids[2], ids[3]]
    assert labeling.neighbour(db, project["id"], ids[2], 1, status="new")["id"] == ids[3]
    assert labeling.neighbour(db, project["id"], ids[2], -1)["id"] == ids[1]
    assert labeling.neighbour(db, project["id"], ids[3], 1) is None
    with pytest.raises(NotFound):
        labeling.project_image(db, project["id"] + 1, ids[0])


# ---------------------------------------------------------------- concurrent saves


def test_two_threads_saving_from_the_same_version_exactly_one_wins(data_dir, db, users, project,
                                                                   two_labelers):
    ids = add_images(db, users["admin"], project, 1)
    cat, dog = label_id(db, project, "cat"), label_id(db, project, "dog")
    first, second = two_labelers
    path = data_dir / "boxwise.db"
    barrier = threading.Barrier(2)
    outcome: dict[str, object] = {}

    def save(actor, label):
        connection = database.connect(path)  # one connection per thread, as in the app
        try:
            barrier.wait()
            outcome[actor["username"]] = annotations.save_boxes(connection, actor, ids[0],
                                                                [box(label)], 0)
        except Conflict as exc:
            outcome[actor["username"]] = exc
        finally:
            connection.conn.close()

    threads = [threading.Thread(target=save, args=(first, cat)),
               threading.Thread(target=save, args=(second, dog))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [name for name, result in outcome.items() if isinstance(result, dict)]
    losers = [name for name, result in outcome.items() if isinstance(result, Conflict)]
    assert len(winners) == 1 and len(losers) == 1
    winner = winners[0]
    assert f"changed by {winner} at " in str(outcome[losers[0]])
    image = images.get_image(db, ids[0])
    assert image["version"] == 1 and image["updated_by"] == (first if winner == "labeler" else second)["id"]
    stored = annotations.get_boxes(db, ids[0])
    assert [b["label_id"] for b in stored] == [cat if winner == "labeler" else dog]
    box_events = [e for e in annotations.history(db, ids[0]) if e["kind"] == "boxes"]
    assert len(box_events) == 1 and box_events[0]["username"] == winner
    # The loser reloads (version 1) and saves on top: nothing of the winner's is lost silently.
    loser = first if losers[0] == "labeler" else second
    annotations.save_boxes(db, loser, ids[0], stored + [box(cat, 40, 10, 60, 40)], 1)
    assert len(annotations.get_boxes(db, ids[0])) == 2


def test_next_moves_on_to_new_work_before_ones_own_half_done_images(db, users, project):
    labeler = users["labeler"]
    ids = add_images(db, users["admin"], project, 4)
    cat = label_id(db, project, "cat")
    for image_id in ids[:2]:  # saved without submitting: in progress, changed by the labeler
        annotations.save_boxes(db, labeler, image_id, [box(cat)], 0)
    served = []
    for _ in range(4):  # as the Label page asks: leaving the images passed over this session
        served.append(labeling.next_image(db, labeler, project["id"], exclude=served)["id"])
    assert served == [ids[2], ids[3], ids[0], ids[1]]
    assert labeling.next_image(db, labeler, project["id"], resume_own=True, exclude=[ids[1]])["id"] == ids[0]


def test_an_empty_queue_says_who_holds_the_waiting_images(db, users, project, monkeypatch):
    ids = add_images(db, users["admin"], project, 1)
    labeling.open_image(db, users["labeler"], ids[0])
    image = images.get_image(db, ids[0])
    assert labeling.next_image(db, users["reviewer"], project["id"]) is None
    until = datetime.datetime.fromtimestamp(image["lease_expires_at"]).strftime("%H:%M")
    assert labeling.why_queue_is_empty(db, users["reviewer"], project["id"]) == \
        f"1 image waits, leased by labeler until {until}."
    assert labeling.why_queue_is_empty(db, users["labeler"], project["id"], exclude=ids) == \
        "No other image is left in your queue."
    labeling.submit(db, users["labeler"], ids[0], [box(label_id(db, project, "cat"))], 0)
    assert labeling.why_queue_is_empty(db, users["admin"], project["id"], review=True) == \
        f"1 image waits, leased by labeler until {until}."
    labeling.release_lease(db, users["labeler"], ids[0])
    assert labeling.why_queue_is_empty(db, users["admin"], project["id"], review=True) == \
        "No image is left to review."
