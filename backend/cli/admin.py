"""Foundation commands: users, projects, ingest, stats, demo."""
from __future__ import annotations

import argparse
import getpass
import json
import sys

from backend import auth, demo, images, projects
from backend.db import connect
from backend.errors import Invalid


def register(subparsers: argparse._SubParsersAction) -> None:
    users = subparsers.add_parser("users", help="add and list user accounts")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="add a user (password from a prompt or --password-stdin)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=auth.ROLES)
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    add.set_defaults(func=users_add)
    listing = users_sub.add_parser("list", help="list users")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=users_list)

    proj = subparsers.add_parser("projects", help="create and list projects")
    proj_sub = proj.add_subparsers(dest="projects_command", required=True)
    create = proj_sub.add_parser("create", help="create a project")
    create.add_argument("name")
    create.add_argument("--classes", default="", help="comma-separated class names, e.g. cat,dog")
    create.set_defaults(func=projects_create)
    plist = proj_sub.add_parser("list", help="list projects")
    plist.add_argument("--all", action="store_true", help="include archived projects")
    plist.add_argument("--json", action="store_true")
    plist.set_defaults(func=projects_list)

    ingest = subparsers.add_parser(
        "ingest", help="add images (files, folders, .zip) to a project",
        description="Exit 0 when every file was accepted (duplicates are skipped, not rejected), "
                    "1 when any was rejected; accepted files stay stored.")
    ingest.add_argument("project")
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    ingest.add_argument("--json", action="store_true", help="one JSON object per file")
    ingest.set_defaults(func=ingest_paths)

    stats = subparsers.add_parser("stats", help="image and box counts of a project")
    stats.add_argument("project")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=project_stats)

    demo_cmd = subparsers.add_parser("demo", help="create the sample project of generated shapes")
    demo_cmd.add_argument("--name", default=demo.DEMO_PROJECT)
    demo_cmd.add_argument("--images", type=int, default=demo.DEMO_IMAGES)
    demo_cmd.set_defaults(func=make_demo)


def users_add(args) -> int:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
        if password != getpass.getpass("Repeat: "):
            raise Invalid("the passwords differ")
    db = connect()
    if not auth.has_users(db) and args.role == "admin":
        user = auth.create_first_admin(db, args.name, password)
    else:
        user = auth.add_user(db, auth.CLI_ACTOR, args.name, password, args.role)
    print(f"added {user['username']} ({user['role']})")
    return 0


def users_list(args) -> int:
    rows = auth.list_users(connect())
    if args.json:
        print(json.dumps(rows))
        return 0
    for user in rows:
        state = "disabled" if user["disabled"] else "active"
        print(f"{user['id']:>4}  {user['username']:<24} {user['role']:<9} {state}")
    return 0


def projects_create(args) -> int:
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    project = projects.create_project(connect(), auth.CLI_ACTOR, args.name, classes)
    print(f"created project {project['name']} (id {project['id']}) with classes: "
          f"{', '.join(classes) or 'none yet'}")
    return 0


def projects_list(args) -> int:
    rows = projects.list_projects(connect(), include_archived=args.all)
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        flag = " (archived)" if row["archived"] else ""
        print(f"{row['id']:>4}  {row['name']:<30} {row['image_count']:>7} images  "
              f"{row['class_count']:>3} classes{flag}")
    return 0


def ingest_paths(args) -> int:
    db = connect()
    project = projects.get_project(db, args.project)
    report = images.ingest(db, auth.CLI_ACTOR, project["id"], images.iter_paths(args.paths))
    for item in report.items:
        if args.json:
            print(json.dumps({"file": item.name, "outcome": item.outcome, "message": item.message,
                              "image_id": item.image_id}))
        else:
            print(f"{item.outcome:<9} {item.name}: {item.message}")
    if not args.json:
        print(f"{report.accepted} accepted, {report.count('duplicate')} duplicates skipped, "
              f"{report.rejected} rejected")
    return 0 if report.ok else 1


def project_stats(args) -> int:
    db = connect()
    result = images.stats(db, projects.get_project(db, args.project)["id"])
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['images']} images, {result['boxes']} boxes")
    for status, count in result["by_status"].items():
        print(f"  {status:<12} {count}")
    for name, count in result["boxes_per_class"].items():
        print(f"  class {name:<20} {count} boxes")
    return 0


def make_demo(args) -> int:
    project = demo.create_demo_project(connect(), auth.CLI_ACTOR, name=args.name, count=args.images)
    print(f"created demo project {project['name']} (id {project['id']}): {demo.DESCRIPTION}")
    return 0
