"""`python -m backend assign | leases | labeling-progress`: the same functions the pages call."""
from __future__ import annotations

import json

from backend import images, labeling
from backend.__main__ import main
from tests.helpers import image_bytes


def stock(db, users, project, count=4):
    report = images.ingest(db, users["admin"], project["id"], [
        (f"c{i}.png", image_bytes((40, 30), color=(i * 20, 5, 5), fmt="PNG")) for i in range(count)])
    return [item.image_id for item in report.items]


def test_assign_by_range_next_and_unassign(db, users, project, capsys):
    ids = stock(db, users, project)
    assert main(["assign", "pets", "--user", "labeler", "--images", f"{ids[0]}-{ids[1]}"]) == 0
    assert capsys.readouterr().out == "assigned 2 images of pets to labeler\n"
    assert main(["assign", "pets", "--user", "reviewer", "--next", "5"]) == 0
    assert [images.get_image(db, i)["assignee_id"] for i in ids] == \
        [users["labeler"]["id"]] * 2 + [users["reviewer"]["id"]] * 2
    assert main(["assign", "pets", "--unassign", "--images", str(ids[0])]) == 0
    assert images.get_image(db, ids[0])["assignee_id"] is None
    assert main(["assign", "pets", "--user", "viewer", "--images", str(ids[0])]) == 3  # invalid
    assert "only be assigned to active users who may label" in capsys.readouterr().err


def test_leases_list_and_release(db, users, project, capsys):
    ids = stock(db, users, project, 2)
    labeling.open_image(db, users["labeler"], ids[1])
    assert main(["leases", "list", "pets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["image_id"], r["username"]) for r in rows] == [(ids[1], "labeler")]
    assert main(["leases", "release", "pets", "--user", "labeler"]) == 0
    assert capsys.readouterr().out == "released 1 leases\n"
    assert labeling.leases(db, project["id"]) == []


def test_labeling_progress(db, users, project, capsys):
    stock(db, users, project, 3)
    assert main(["labeling-progress", "pets", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["by_status"]["new"] == 3 and result["summary"]["images"] == 3
    assert result["review"]["rejection_rate"] is None
