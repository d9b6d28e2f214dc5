"""Labeling commands: assign work, list and release leases, show progress."""
from __future__ import annotations

import argparse
import json

from backend import auth, dashboard, labeling, projects
from backend.db import connect
from backend.errors import Invalid


def register(subparsers: argparse._SubParsersAction) -> None:
    assign = subparsers.add_parser(
        "assign", help="assign images of a project to a labeler",
        description="Their queue serves assigned images first. Give image ids (--images 1-50,60) "
                    "or a number of unassigned new images (--next 100); --unassign clears.")
    assign.add_argument("project")
    who = assign.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="user name of the labeler")
    who.add_argument("--unassign", action="store_true", help="remove the assignment")
    which = assign.add_mutually_exclusive_group(required=True)
    which.add_argument("--images", help="image ids and ranges, e.g. 1-50,60")
    which.add_argument("--next", type=int, metavar="N", help="the next N unassigned new images")
    assign.set_defaults(func=assign_images)

    leases = subparsers.add_parser("leases", help="list or release labeling leases")
    leases_sub = leases.add_subparsers(dest="leases_command", required=True)
    show = leases_sub.add_parser("list", help="leases held now")
    show.add_argument("project")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=leases_list)
    release = leases_sub.add_parser("release", help="release leases (all, or one user's)")
    release.add_argument("project")
    release.add_argument("--user", help="only this user's leases")
    release.set_defaults(func=leases_release)

    progress = subparsers.add_parser("labeling-progress",
                                     help="labeling progress: statuses, review rejection rate")
    progress.add_argument("project")
    progress.add_argument("--json", action="store_true")
    progress.set_defaults(func=show_progress)


def assign_images(args) -> int:
    db = connect()
    project = projects.get_project(db, args.project)
    user_id = None if args.unassign else auth.get_user(db, args.user)["id"]
    if args.images:
        count = labeling.assign(db, auth.CLI_ACTOR, project["id"],
                                labeling.parse_id_ranges(args.images), user_id)
    elif user_id is None:
        raise Invalid("--next picks unassigned images; to unassign, give --images")
    else:
        count = len(labeling.assign_next(db, auth.CLI_ACTOR, project["id"], user_id, args.next))
    target = "nobody" if user_id is None else args.user
    print(f"assigned {count} images of {project['name']} to {target}")
    return 0


def leases_list(args) -> int:
    db = connect()
    rows = labeling.leases(db, projects.get_project(db, args.project)["id"])
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        print(f"#{row['image_id']:<6} {row['filename']:<40} {row['username']:<20} until {row['until']}")
    if not rows:
        print("no leases held")
    return 0


def leases_release(args) -> int:
    db = connect()
    project = projects.get_project(db, args.project)
    user_id = auth.get_user(db, args.user)["id"] if args.user else None
    count = labeling.release_leases(db, auth.CLI_ACTOR, project["id"], user_id)
    print(f"released {count} leases")
    return 0


def show_progress(args) -> int:
    db = connect()
    project_id = projects.get_project(db, args.project)["id"]
    result = {"summary": dashboard.summary(db, project_id),
              "by_status": dashboard.counts_by_status(db, project_id),
              "review": dashboard.review_summary(db, project_id)}
    if args.json:
        print(json.dumps(result))
        return 0
    summary, review = result["summary"], result["review"]
    print(f"{summary['images']} images, {summary['done']} done, {summary['boxes']} boxes, "
          f"{summary['drafts']} open model drafts")
    for status, count in result["by_status"].items():
        print(f"  {status:<12} {count}")
    rate = review["rejection_rate"]
    print(f"review: {review['approved']} approved, {review['rejected']} rejected"
          + (f" ({rate:.0%} rejected)" if rate is not None else ""))
    return 0
