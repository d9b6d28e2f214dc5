"""How fast labeling feels in a real browser (Debian's Chromium through Playwright) on the real
app, on an idle machine and while a training run goes on:

    .venv/bin/python bench/label_browser_bench.py                    # idle, then training
    .venv/bin/python bench/label_browser_bench.py --repeats 5 --conditions idle
    .venv/bin/python bench/label_browser_bench.py --conditions idle training --baseline main

Two projects: the demo project (320×240 shapes, up to 3 boxes an image) and a dense one
(1249×1035 generated aerial-like pictures with 280 boxes of 12–40 px each, like the issue's
tree survey). For each, `--repeats` times:
  N → ready      from N's keydown until the next image's header is shown, the page is idle
                 and the canvas has painted the image's boxes (a box drawn before that is
                 not taken)
  draw → listed  drag a box on the canvas; from the mouse's release until the box list counts it
  S → saved      from S's keydown until the header shows the image's next version
All three are timed in the page (`STAMPS`), up to the animation frame the condition holds in.
Conditions: `idle`; `training`: a `quick`-template run of the demo project's dataset version
going on (launched as the dashboard launches it: niced, TensorFlow threads limited);
`training-unniced`: the same with `BOXWISE_TRAIN_NICE=0` and every CPU for TensorFlow (how runs
were launched before), as the baseline for what the priority buys.
With `--baseline REV` the app as of that git revision runs too (its files from `git archive`,
on a copy of the same data, its own server), two repeats at a time in turn with this one, so both see
the same load. Prints medians and p90 in seconds per condition, the ratio of each median to the
idle one (and to the baseline's), and a JSON line.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SURFACE = "[data-testid=stBidiComponentIsolated] canvas.upper-canvas"
DENSE_SIZE = (1249, 1035)
DENSE_BOXES = 280
CONDITIONS = ("idle", "training", "training-unniced")
# "Ready": the script run is over, one canvas is on the page, and it has painted its boxes.
READY = """const header = () => { const h = document.querySelector('h4'); return h ? h.innerText : ''; };
const ready = () => {
  if (!document.querySelector('[data-testid=stApp][data-test-script-state=notRunning]')) return false;
  const surfaces = [...document.querySelectorAll('[data-testid=stBidiComponentIsolated]')]
    .map((h) => h.shadowRoot && h.shadowRoot.querySelector('canvas.upper-canvas')).filter(Boolean);
  if (surfaces.length !== 1) return false;
  // Boxes listed must be painted: the canvas loads its boxes after it appears, and a box drawn
  // before that is not taken.
  const listed = parseInt(((document.body.innerText.match(/Boxes \\((\\d+),/) || [])[1]) || '0');
  if (!listed) return true;
  const lower = surfaces[0].parentElement.querySelector('canvas.lower-canvas');
  const pixels = lower.getContext('2d').getImageData(0, 0, lower.width, lower.height).data;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) return true;
  return false;
};
"""


# Timed in the page, not in Python (a Playwright call is a round trip, and a drag is ten of
# them): the last key pressed and the last mouse release are stamped as they happen, and a
# wait's condition stamps the animation frame it first holds in.
STAMPS = """window.__stamps = { keydown: 0, pointerup: 0, done: 0 };
for (const type of ['keydown', 'pointerup']) {
  document.addEventListener(type, () => { window.__stamps[type] = performance.now(); }, true);
}"""
STAMP = "((ok) => (ok && (window.__stamps.done = performance.now()), ok))({})"


def since(page, event: str) -> float:
    """Seconds from the last `event` (keydown, pointerup) to the stamped condition."""
    return page.evaluate(f"() => (window.__stamps.done - window.__stamps.{event}) / 1000")


def dense_picture(rng: random.Random) -> tuple[bytes, list[tuple[float, float, float, float]]]:
    """A 1249×1035 PNG of 280 dark blobs ("trees", 12–40 px) on a textured background, and
    their boxes."""
    from PIL import Image, ImageDraw, ImageFilter
    image = Image.effect_noise(DENSE_SIZE, 40).convert("RGB")
    image = Image.blend(image, Image.new("RGB", DENSE_SIZE, (110, 140, 80)), 0.6)
    draw = ImageDraw.Draw(image)
    boxes = []
    for _ in range(DENSE_BOXES):
        side_x, side_y = rng.uniform(12, 40), rng.uniform(12, 40)
        x, y = rng.uniform(0, DENSE_SIZE[0] - side_x), rng.uniform(0, DENSE_SIZE[1] - side_y)
        draw.ellipse([x, y, x + side_x, y + side_y], fill=(30, 70 + rng.randrange(40), 30))
        boxes.append((x, y, x + side_x, y + side_y))
    out = io.BytesIO()
    image.filter(ImageFilter.SMOOTH).save(out, format="PNG")
    return out.getvalue(), boxes


def prepare(data: Path, images_per_project: int) -> dict:
    """Users, the demo project, the dense project, and what a training run needs."""
    from backend import annotations, auth, dataset_versions, db as database, demo, images, projects, saved_configs
    db = database.connect(data / "boxwise.db")
    admin = auth.create_first_admin(db, "admin", "admin-password")
    auth.add_user(db, admin, "ann", "ann-password", "labeler")
    shapes = demo.create_demo_project(db, admin)
    dense = projects.create_project(db, admin, "trees", ["tree"])
    rng = random.Random(3)
    tree = projects.list_labels(db, dense["id"])[0]["id"]
    for number in range(images_per_project):
        picture, boxes = dense_picture(rng)
        report = images.ingest(db, admin, dense["id"], [(f"survey{number:02d}.png", picture)])
        annotations.save_boxes(db, admin, report.items[0].image_id, [
            {"label_id": tree, "xmin": b[0], "ymin": b[1], "xmax": b[2], "ymax": b[3]} for b in boxes], 0)
    version = dataset_versions.create_export(db, admin, shapes["id"], "tfrecord", checksums=False)
    # Every image back in the queue ("in progress" by admin), so N has work on both projects.
    db.execute("update images set status = 'in_progress', labeled_by = null")
    text = saved_configs.fill_from_dataset_version(saved_configs.templates()["quick"], version)
    config = saved_configs.save_config(db, admin, shapes["id"], "bench-quick", text)
    return {"admin": admin, "projects": {"demo": shapes["name"], "dense": dense["name"]},
            "demo_id": shapes["id"], "export_id": version.id, "config_id": config["id"]}


def start_app(data: Path, port: int, root: Path = ROOT) -> subprocess.Popen:
    env = {**os.environ, "BOXWISE_DATA": str(data)}
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=root, env=env, stdout=open(data / f"streamlit-{port}.log", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("the app did not start")


def idle(page) -> None:
    from tests.e2e.browser import wait_idle
    wait_idle(page)


def measure_project(page, project: str, repeats: int, misses: list[str], first: int = 0
                    ) -> dict[str, list[float]]:
    """The three timings, `repeats` times, on `project` (chosen in the sidebar first); a drag
    that does not become a listed box is added to `misses`. Drags go to a new place for each
    repeat number from `first` on."""
    from playwright.sync_api import Error as PlaywrightError, TimeoutError as PlaywrightTimeout
    page.get_by_role("link", name="Label").click()
    page.get_by_role("button", name="Next image to label").wait_for()
    picker = page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first
    picker.click()
    page.get_by_role("option", name=project).click()
    idle(page)
    page.keyboard.press("Escape")
    times: dict[str, list[float]] = {"N → ready": [], "draw → listed": [], "S → saved": []}
    header = page.locator("h4").first
    for number in range(first, first + repeats):
        before = header.inner_text() if header.count() else ""
        # Keys go to the page, not to a field that had the focus.
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.keyboard.press("n")
        page.wait_for_function("(before) => {" + READY + "return " + STAMP.format("ready() && header() !== before")
                               + "; }", arg=before, polling="raf")
        times["N → ready"].append(since(page, "keydown"))

        count = int(re.search(r"Boxes \((\d+)", page.get_by_text(re.compile(r"^Boxes \(")).inner_text()).group(1))
        surface = None
        while surface is None:  # None (or two canvases) while a rerun swaps the canvas
            page.wait_for_function("() => {" + READY + "return ready(); }", polling="raf")
            try:
                surface = page.locator(SURFACE).bounding_box(timeout=2000)
            except PlaywrightError:
                surface = None
        x = surface["x"] + 40 + 37 * number
        y = surface["y"] + 40 + 29 * number
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 15, y + 12, steps=3)
        page.mouse.move(x + 30, y + 24, steps=3)
        page.mouse.up()
        try:
            page.wait_for_function("(n) => " + STAMP.format(
                "new RegExp('Boxes \\\\(' + n + ',').test(document.body.innerText)"), arg=count + 1,
                polling="raf", timeout=20_000)
            times["draw → listed"].append(since(page, "pointerup"))
        except PlaywrightTimeout:
            # Counted, not hidden: the drag did not become a box within 20 s.
            state = page.evaluate("() => { const b = window.__boxwiseBridge || {}; return {"
                                  "bridge_header: (b.data || {}).header, held: !!b.held,"
                                  "replayed: b.replayed || 0}; }")
            misses.append(f"{project} #{number + 1}: the box drawn was not listed (bridge: {state})")
            page.keyboard.press("Escape")
            continue
        page.wait_for_function("() => {" + READY + "return ready(); }", polling="raf")

        version = int(re.search(r"version (\d+)", header.inner_text()).group(1))
        page.keyboard.press("s")
        page.wait_for_function("(v) => {" + READY + "return " + STAMP.format("ready() && header().endsWith('version ' + v)")
                               + "; }", arg=str(version + 1), polling="raf")
        times["S → saved"].append(since(page, "keydown"))
    return times


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": statistics.median(ordered), "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=["idle", "training"])
    parser.add_argument("--dense-images", type=int, default=4)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--baseline", metavar="REV",
                        help="also run the app as of git revision REV (its files from `git archive`) on "
                             "a copy of the same data, two repeats at a time in turn with this one, and print "
                             "each median over the baseline's")
    args = parser.parse_args(argv)
    from tests.e2e.browser import ARGS, CHROMIUM, free_port
    from tests.e2e.test_label_browser import fill_login
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="boxwise-label-bench-") as folder:
        data = Path(folder) / "data"
        data.mkdir()
        os.environ["BOXWISE_DATA"] = str(data)
        made = prepare(data, max(args.dense_images, 2))
        from backend import db as database, run_artefacts, run_lifecycle
        db = database.connect(data / "boxwise.db")
        roots = {"": ROOT}
        if args.baseline:
            roots[" · baseline"] = Path(folder) / "baseline"
            roots[" · baseline"].mkdir()
            archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", args.baseline],
                                       stdout=subprocess.PIPE)
            subprocess.run(["tar", "-x", "-C", str(roots[" · baseline"])], stdin=archive.stdout, check=True)
            if archive.wait() != 0:
                raise SystemExit(f"git archive {args.baseline} failed")
        ports = {suffix: (args.port + k if args.port else free_port()) for k, suffix in enumerate(roots)}
        # The baseline gets a copy of the data folder of its own: one app's leases, saves and
        # picture cache (the disk cache of canvas backgrounds) must not speed up or slow down
        # the other's.
        folders = {"": data}
        if args.baseline:
            folders[" · baseline"] = Path(folder) / "data-baseline"
            shutil.copytree(data, folders[" · baseline"])
        apps = {suffix: start_app(folders[suffix], ports[suffix], root) for suffix, root in roots.items()}
        results: dict[str, dict] = {}
        misses: list[str] = []
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
                pages = {}
                for suffix, port in ports.items():
                    page = pages[suffix] = browser.new_context(viewport={"width": 1800, "height": 1400}).new_page()
                    page.set_default_timeout(120_000)
                    page.add_init_script(STAMPS)
                    page.goto(f"http://127.0.0.1:{port}")
                    fill_login(page, "ann")
                for condition in args.conditions:
                    run = None
                    if condition != "idle":
                        os.environ["BOXWISE_TRAIN_NICE"] = "10" if condition == "training" else "0"
                        os.environ["BOXWISE_TRAIN_THREADS"] = \
                            str(max(1, (os.cpu_count() or 1) - 1)) if condition == "training" \
                            else str(os.cpu_count() or 1)
                        run = run_lifecycle.start_run(db, made["admin"], made["demo_id"], export_id=made["export_id"],
                                             config_id=made["config_id"], num_train_steps=100_000)
                        deadline = time.monotonic() + 600
                        while not (run_artefacts.run_progress(run_lifecycle.get_run(db, run["id"])) or {}).get("step"):
                            if time.monotonic() > deadline or run_lifecycle.get_run(db, run["id"])["status"] != "running":
                                raise RuntimeError("the training run did not start stepping:\n"
                                                   + "\n".join(run_artefacts.log_tail(run_lifecycle.get_run(db, run["id"]))))
                            time.sleep(1)
                    try:
                        for name, project in made["projects"].items():
                            # With a baseline, two repeats of each app in turn (the load drifts).
                            chunk = 2 if args.baseline else args.repeats
                            for first in range(0, args.repeats, chunk):
                                for suffix, page in pages.items():
                                    times = measure_project(page, project, min(chunk, args.repeats - first),
                                                            misses, first=first)
                                    for measure, values in times.items():
                                        results.setdefault(f"{condition} · {name}{suffix}", {}) \
                                            .setdefault(measure, []).extend(values)
                    except Exception:
                        page.screenshot(path=str(Path(tempfile.gettempdir()) / "label-bench-failure.png"),
                                        full_page=True)
                        raise
                    finally:
                        if run is not None:
                            run_lifecycle.cancel_run(db, made["admin"], run["id"])
                            run_lifecycle.wait_for_run(db, run["id"], timeout=300)
                browser.close()
        finally:
            for app in apps.values():
                app.terminate()
                app.wait(timeout=30)

    print(f"{'condition · project':44} {'measure':14} {'median s':>9} {'p90 s':>7} {'× idle':>7} "
          f"{'× baseline':>10}")
    report = {}
    for key, times in results.items():
        condition, project, *baseline = key.split(" · ")
        suffix = " · baseline" if baseline else ""
        for measure, values in times.items():
            stats = summary(values)
            base = results.get(f"idle · {project}{suffix}", {}).get(measure)
            ratio = stats["median"] / statistics.median(base) if base else None
            other = None if baseline else results.get(f"{key} · baseline", {}).get(measure)
            versus = stats["median"] / statistics.median(other) if other else None
            report.setdefault(key, {})[measure] = {**stats, "ratio_to_idle": ratio,
                                                   "ratio_to_baseline": versus, "n": len(values)}
            print(f"{key:44} {measure:14} {stats['median']:9.2f} {stats['p90']:7.2f} "
                  f"{'' if ratio is None else f'{ratio:7.2f}':>7} {'' if versus is None else f'{versus:10.2f}'}")
    for miss in misses:
        print("miss:", miss)
    print(json.dumps({"cpus": os.cpu_count(), "load": os.getloadavg(), "baseline": args.baseline,
                      "misses": misses,
                      "results": report}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
