"""`python -m backend ...` as a user types it: real processes, real files."""
import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import image_bytes

ROOT = Path(__file__).resolve().parents[1]


def cli(data_dir, *args, stdin=None):
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=120,
                          env={"BOXWISE_DATA": str(data_dir), "PATH": "/usr/bin:/bin"})


def test_help_lists_the_foundation_subcommands(data_dir):
    out = cli(data_dir, "--help")
    assert out.returncode == 0
    for command in ("users", "projects", "ingest", "stats", "demo"):
        assert command in out.stdout


def test_users_projects_ingest_stats(data_dir, tmp_path):
    assert cli(data_dir, "users", "add", "ann", "--role", "admin", "--password-stdin",
               stdin="a-long-password\n").returncode == 0
    added = cli(data_dir, "users", "add", "bob", "--role", "labeler", "--password-stdin", stdin="bob-password\n")
    assert added.stdout.strip() == "added bob (labeler)"
    users = json.loads(cli(data_dir, "users", "list", "--json").stdout)
    assert [(u["username"], u["role"]) for u in users] == [("ann", "admin"), ("bob", "labeler")]
    assert all("password_hash" not in u for u in users)

    made = cli(data_dir, "projects", "create", "pets", "--classes", "cat, dog")
    assert made.returncode == 0, made.stderr
    listed = json.loads(cli(data_dir, "projects", "list", "--json").stdout)
    assert [(p["name"], p["class_count"], p["image_count"]) for p in listed] == [("pets", 2, 0)]

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(image_bytes((30, 30)))
    (folder / "sub" / "b.png").write_bytes(image_bytes((20, 10), fmt="PNG"))
    (folder / "notes.txt").write_text("ignored: not an image extension")
    ok = cli(data_dir, "ingest", "pets", str(folder))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[-1] == "2 accepted, 0 duplicates skipped, 0 rejected"

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    again = cli(data_dir, "ingest", "pets", str(folder / "a.jpg"), str(bad), "--json")
    assert again.returncode == 1
    rows = [json.loads(line) for line in again.stdout.splitlines()]
    assert [(r["outcome"], r["message"]) for r in rows] == [
        ("duplicate", "same content as image #1 (a.jpg)"), ("rejected", "empty file")]

    stats = json.loads(cli(data_dir, "stats", "pets", "--json").stdout)
    assert stats == {"images": 2, "by_status": {"new": 2}, "boxes": 0,
                     "boxes_per_class": {"cat": 0, "dog": 0}}


def test_domain_errors_are_one_line_with_their_own_exit_codes(data_dir):
    out = cli(data_dir, "stats", "nope")
    assert out.returncode == 4  # not found
    assert out.stderr.strip() == "error: no project 'nope'"
    weak = cli(data_dir, "users", "add", "x", "--role", "viewer", "--password-stdin", stdin="short\n")
    assert weak.returncode == 3 and "at least 8 characters" in weak.stderr  # invalid
    usage = cli(data_dir, "stats")
    assert usage.returncode == 2  # argparse: missing argument


def test_demo_command(data_dir):
    out = cli(data_dir, "demo", "--images", "8")
    assert out.returncode == 0, out.stderr
    stats = json.loads(cli(data_dir, "stats", "demo-shapes", "--json").stdout)
    assert stats["images"] == 8
    assert stats["by_status"] == {"labeled": 6, "new": 2}
    assert set(stats["boxes_per_class"]) == {"circle", "square", "triangle"}
