import pytest

from backend import annotations, images, projects
from backend.errors import Invalid, NotFound
from tests.helpers import image_bytes


def test_create_project_with_classes_gets_ids_from_one(db, admin):
    project = projects.create_project(db, admin, "pets", ["cat", "dog"])
    labels = projects.list_labels(db, project["id"])
    assert [(label["name"], label["label_map_id"], label["position"]) for label in labels] == [("cat", 1, 0), ("dog", 2, 1)]
    assert projects.get_project(db, "pets")["id"] == project["id"]
    with pytest.raises(Invalid, match="already exists"):
        projects.create_project(db, admin, "pets")
    with pytest.raises(NotFound):
        projects.get_project(db, "nope")


def test_rename_archive_project(db, admin, project):
    assert projects.rename_project(db, admin, project["id"], "animals")["name"] == "animals"
    projects.set_archived(db, admin, project["id"], True)
    assert projects.list_projects(db) == []
    assert [p["name"] for p in projects.list_projects(db, include_archived=True)] == ["animals"]


def test_label_map_ids_never_change_or_get_reused(db, admin, project):
    cat, dog, bird = projects.list_labels(db, project["id"])
    renamed = projects.rename_label(db, admin, cat["id"], "kitten")
    assert (renamed["name"], renamed["label_map_id"]) == ("kitten", 1)
    projects.delete_label(db, admin, bird["id"])
    fish = projects.add_label(db, admin, project["id"], "fish")
    assert fish["label_map_id"] == 4  # 3 belonged to the deleted class and is never given again
    recolored = projects.recolor_label(db, admin, dog["id"], "#123abc")
    assert recolored["color"] == "#123ABC"
    with pytest.raises(Invalid, match="#RRGGBB"):
        projects.recolor_label(db, admin, dog["id"], "red")


def test_reorder_changes_positions_not_ids(db, admin, project):
    cat, dog, bird = projects.list_labels(db, project["id"])
    reordered = projects.reorder_labels(db, admin, project["id"], [bird["id"], cat["id"], dog["id"]])
    assert [(label["name"], label["label_map_id"]) for label in reordered] == [("bird", 3), ("cat", 1), ("dog", 2)]
    with pytest.raises(Invalid, match="exactly once"):
        projects.reorder_labels(db, admin, project["id"], [bird["id"], cat["id"]])


def test_deleting_a_class_with_boxes_requires_merge(db, admin, project):
    cat, dog, _ = projects.list_labels(db, project["id"])
    report = images.ingest(db, admin, project["id"], [("a.jpg", image_bytes((100, 80)))])
    image_id = report.items[0].image_id
    annotations.save_boxes(db, admin, image_id, [
        {"label_id": cat["id"], "xmin": 1, "ymin": 1, "xmax": 20, "ymax": 20},
        {"label_id": cat["id"], "xmin": 30, "ymin": 30, "xmax": 60, "ymax": 60}], 0)
    with pytest.raises(Invalid, match="'cat' still has 2 boxes"):
        projects.delete_label(db, admin, cat["id"])
    assert projects.delete_label(db, admin, cat["id"], merge_into=dog["id"]) == 2
    assert {b["label_id"] for b in annotations.get_boxes(db, image_id)} == {dog["id"]}
    assert [label["name"] for label in projects.list_labels(db, project["id"])] == ["dog", "bird"]


def test_viewer_cannot_change_classes(db, users, project):
    cat = projects.list_labels(db, project["id"])[0]
    with pytest.raises(PermissionError):
        projects.rename_label(db, users["viewer"], cat["id"], "x")
    with pytest.raises(PermissionError):
        projects.add_label(db, users["labeler"], project["id"], "x")
