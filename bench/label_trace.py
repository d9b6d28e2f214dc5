"""Where the time of a drawn box and of N goes on the Label page, in a real browser:

    .venv/bin/python bench/label_trace.py                 # 4 draws and 4 N on each project
    .venv/bin/python bench/label_trace.py --repeats 6 --root /tmp/other-checkout

The app runs in a server process of its own (this file with `--serve`) that times, in wall
milliseconds: each back message's arrival, each script run (whole page or fragment), and
inside a run the functions named in `TIMED` (accumulated per run). In Chromium a wrapper around
`WebSocket` stamps every frame sent and received (size, decoded afterwards with Streamlit's
protobufs: which elements a run sent in full, which as a cache reference) and the page's long
tasks; both sides use the machine's wall clock, so the phases line up:

  (a) browser before send   pointer released → the back message leaves the browser
  (b) upload                its size (and the server's arrival stamp − send)
  (c) server                arrival → script run start → end (the timed functions within)
  (d) down + render         run end → the box list shows the box (draw), or the canvas is
                            ready (N: the bench's "ready"); bytes received in between

Prints a timeline of the first sample and the medians, and a JSON line.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIMED = {
    "backend.canvas": ["drawing", "display_image", "overview_image", "boxes_from_canvas",
                       "canvas_shapes", "merge_view", "shown_boxes"],
    "backend.annotations": ["box_table", "same_boxes", "history_table", "get_boxes"],
    "backend.labeling": ["open_image", "next_image", "renew_lease", "why_queue_is_empty"],
    "streamlit_drawable_canvas": ["st_canvas"],
    "pages.canvas_bridge": ["canvas_bridge"],
}

# Stamps every websocket frame and long task in the page (wall-clock ms).
TRACE_JS = r"""
(() => {
  const now = () => performance.timeOrigin + performance.now();
  const trace = window.__trace = { frames: [], tasks: [], marks: [] };
  const sizeOf = (d) => d.byteLength !== undefined ? d.byteLength : (d.size !== undefined ? d.size : d.length);
  const Base = window.WebSocket;
  class Traced extends Base {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (e) => trace.frames.push({ t: now(), dir: "in", size: sizeOf(e.data), data: e.data }));
    }
    send(d) { trace.frames.push({ t: now(), dir: "out", size: sizeOf(d), data: d }); return super.send(d); }
  }
  window.WebSocket = Traced;
  try {
    new PerformanceObserver((list) => list.getEntries().forEach((e) =>
      trace.tasks.push({ t: performance.timeOrigin + e.startTime, ms: e.duration }))).observe({ type: "longtask", buffered: true });
  } catch (e) {}
  for (const type of ["pointerup", "keydown"]) {
    document.addEventListener(type, (e) => trace.marks.push({ t: now(), type, key: e.key || "" }), true);
  }
})();
"""

# A wait's condition that stamps, in the page, the moment it first holds (a stamp taken in Python
# after the wait returned would add Playwright's round trip).
STAMP = "((ok) => (ok && (window.__trace.done = performance.timeOrigin + performance.now()), ok))({})"

# Frames since `since` (ms), binary payloads as base64 for decoding in Python.
FRAMES_JS = r"""async (since) => {
  const out = [];
  for (const f of window.__trace.frames) {
    if (f.t < since) continue;
    let b64 = null;
    if (f.data instanceof ArrayBuffer || ArrayBuffer.isView(f.data) || f.data instanceof Blob) {
      const bytes = f.data instanceof Blob ? new Uint8Array(await f.data.arrayBuffer())
        : ArrayBuffer.isView(f.data) ? new Uint8Array(f.data.buffer, f.data.byteOffset, f.data.byteLength)
        : new Uint8Array(f.data);
      let s = ""; for (let i = 0; i < bytes.length; i += 32768) s += String.fromCharCode(...bytes.subarray(i, i + 32768));
      b64 = btoa(s);
    }
    out.push({ t: f.t, dir: f.dir, size: f.size, b64 });
  }
  return { frames: out, tasks: window.__trace.tasks.filter((x) => x.t >= since),
           marks: window.__trace.marks.filter((x) => x.t >= since) };
}"""


# ---------------------------------------------------------------- the timed server

def serve(log_path: str, port: int, root: Path = ROOT) -> None:
    """Run the app in `root` with timers (see the module's docstring); one JSON line per event."""
    import functools
    import importlib

    sys.path.insert(0, str(root))

    lock = threading.Lock()
    log = open(log_path, "a", buffering=1)
    current: dict = {}

    def emit(record: dict) -> None:
        with lock:
            log.write(json.dumps(record) + "\n")

    def timed(name, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent = (time.perf_counter() - started) * 1000
                if threading.current_thread() is current.get("thread"):
                    entry = current["timers"].setdefault(name, [0.0, 0])
                    entry[0] += spent
                    entry[1] += 1
        return wrapper

    def patch_modules() -> None:
        # Once the runtime is up (the components register themselves at import).
        for module_name, names in TIMED.items():
            module = importlib.import_module(module_name)
            for name in names:
                setattr(module, name, timed(f"{module_name.split('.')[-1]}.{name}", getattr(module, name)))
        current["patched"] = True
    from streamlit.delta_generator import DeltaGenerator
    for name in ("dataframe", "image", "button", "markdown", "caption", "multiselect", "selectbox",
                 "toggle", "columns", "number_input", "text_input", "checkbox", "expander", "container"):
        setattr(DeltaGenerator, name, timed(f"st.{name}", getattr(DeltaGenerator, name)))
    import streamlit
    for name in ("dataframe", "image", "markdown", "caption", "columns", "warning", "toast"):
        setattr(streamlit, name, timed(f"st.{name}", getattr(streamlit, name)))
    from streamlit.runtime.scriptrunner_utils import script_run_context
    original_hash = script_run_context.populate_hash_if_needed
    script_run_context.populate_hash_if_needed = timed("streamlit.hash_messages", original_hash)
    original_enqueue = script_run_context.ScriptRunContext.enqueue

    def enqueue(self, msg):
        if threading.current_thread() is current.get("thread"):
            current["sent"].append(msg.ByteSize())
        return original_enqueue(self, msg)
    script_run_context.ScriptRunContext.enqueue = enqueue

    from streamlit.runtime import app_session
    original_backmsg = app_session.AppSession.handle_backmsg

    def handle_backmsg(self, msg):
        emit({"event": "backmsg", "t": time.time() * 1000, "type": msg.WhichOneof("type"),
              "bytes": msg.ByteSize()})
        return original_backmsg(self, msg)
    app_session.AppSession.handle_backmsg = handle_backmsg

    from streamlit.runtime.scriptrunner import script_runner
    original_run = script_runner.ScriptRunner._run_script

    def run_script(self, rerun_data):
        # A rerun requested during a run restarts inside this call (recursively): each level
        # is logged on its own, its timers and messages up to where the next level began.
        if not current.get("patched"):
            patch_modules()
        started = time.time() * 1000
        emit({"event": "run_start", "t": started, "fragment": bool(rerun_data.fragment_id_queue)})
        outer = current.get("level")
        level = current["level"] = {"timers": {}, "sent": [], "start": started}
        current.update(thread=threading.current_thread(), timers=level["timers"], sent=level["sent"])
        profile = None
        if os.environ.get("BOXWISE_TRACE_PROFILE") and outer is None:
            import cProfile
            profile = cProfile.Profile()
            profile.enable()
        try:
            return original_run(self, rerun_data)
        finally:
            if profile is not None:
                import io
                import pstats
                profile.disable()
                text = io.StringIO()
                pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(45)
                emit({"event": "profile", "start": started, "fragment": bool(rerun_data.fragment_id_queue),
                      "text": text.getvalue()})
            if "end" not in level:
                level["end"] = time.time() * 1000
            emit({"event": "run", "start": started, "end": level["end"],
                  "fragment": bool(rerun_data.fragment_id_queue),
                  "timers": {k: [round(v[0], 2), v[1]] for k, v in level["timers"].items()},
                  "messages": len(level["sent"]), "message_bytes": sum(level["sent"])})
            if outer is not None:
                outer.setdefault("end", started)
            current["level"] = outer
            if outer is None:
                current.update(thread=None)
            else:
                current.update(timers=outer["timers"], sent=outer["sent"])

    script_runner.ScriptRunner._run_script = run_script

    from streamlit.web import cli
    sys.argv = ["streamlit", "run", str(root / "app.py"), "--server.port", str(port),
                "--server.headless", "true", "--browser.gatherUsageStats", "false",
                "--server.fileWatcherType", "none"]
    os.chdir(root)
    cli.main()


# ---------------------------------------------------------------- decoding and the phases

def decode(frames: list[dict]) -> list[dict]:
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    out = []
    for frame in frames:
        item = {"t": frame["t"], "dir": frame["dir"], "size": frame["size"]}
        if frame["b64"]:
            raw = base64.b64decode(frame["b64"])
            item["size"] = len(raw)
            if frame["dir"] == "out":
                msg = BackMsg.FromString(raw)
                item["type"] = msg.WhichOneof("type")
                if item["type"] == "rerun_script":
                    states = msg.rerun_script.widget_states.widgets
                    item["widgets"] = sorted(((w.id.split("-")[-1][:40], w.ByteSize()) for w in states),
                                             key=lambda p: -p[1])[:3]
            else:
                msg = ForwardMsg.FromString(raw)
                kind = msg.WhichOneof("type")
                item["type"] = kind
                if kind == "delta":
                    delta = msg.delta
                    item["type"] = delta.WhichOneof("type")
                    if item["type"] == "new_element":
                        item["element"] = delta.new_element.WhichOneof("type")
                elif kind == "script_finished":
                    item["type"] = "script_finished"
        out.append(item)
    return out


def phases(start: float, done: float, frames: list[dict], runs: list[dict], tasks: list[dict],
           backmsgs: list[dict]) -> dict:
    sent = [f for f in frames if f["dir"] == "out" and f.get("type") == "rerun_script" and f["t"] >= start]
    first_send = sent[0] if sent else None
    arrivals = [b for b in backmsgs if b["type"] == "rerun_script" and first_send and b["t"] >= first_send["t"] - 5]
    in_window = [r for r in runs if r["end"] >= start and r["start"] <= done]
    last_end = max((r["end"] for r in in_window), default=None)
    received = [f for f in frames if f["dir"] == "in" and start <= f["t"] <= done]
    return {
        "total_ms": done - start,
        "a_before_send_ms": (first_send["t"] - start) if first_send else None,
        "b_upload_bytes": first_send["size"] if first_send else None,
        "b_upload_widgets": first_send.get("widgets") if first_send else None,
        "b_arrival_ms": (arrivals[0]["t"] - first_send["t"]) if arrivals and first_send else None,
        "c_runs": [{"fragment": r["fragment"], "queued_ms": round(r["start"] - start, 1),
                    "ms": round(r["end"] - r["start"], 1), "messages": r["messages"],
                    "message_bytes": r["message_bytes"],
                    "top": sorted(r["timers"].items(), key=lambda kv: -kv[1][0])[:8]} for r in in_window],
        "d_after_run_ms": (done - last_end) if last_end else None,
        "d_received_bytes": sum(f["size"] for f in received),
        "d_received_elements": [f"{f.get('element') or f.get('type')}:{f['size']}" for f in received
                                if f["size"] > 2000],
        "sends": len(sent),
        "browser_long_tasks_ms": round(sum(t["ms"] for t in tasks if start <= t["t"] <= done), 1),
    }


def add_profile(spent: dict, profile: dict) -> None:
    """Self time (ms) of a DevTools CPU profile, summed by script file (and by V8's own
    categories: garbage collector, program, idle)."""
    where = {}
    for node in profile["nodes"]:
        frame = node["callFrame"]
        url = frame.get("url") or ""
        where[node["id"]] = url.rsplit("/", 1)[-1].split("?")[0] if url else frame.get("functionName") or "?"
    for node_id, delta in zip(profile.get("samples", []), profile.get("timeDeltas", [])):
        spent[where.get(node_id, "?")] = spent.get(where.get(node_id, "?"), 0.0) + delta / 1000


def read_log(path: Path) -> tuple[list[dict], list[dict]]:
    runs, backmsgs = [], []
    # With BOXWISE_TRACE_PROFILE=FILE the server profiles each run (cProfile, slower) into FILE.
    profiles = Path(os.environ.get("BOXWISE_TRACE_PROFILE") or path.with_suffix(".profiles.txt"))
    profiles.write_text("")
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["event"] == "run":
            runs.append(record)
        elif record["event"] == "profile":
            with profiles.open("a") as out:
                out.write(f"==== {'fragment' if record['fragment'] else 'page'} run at {record['start']:.0f}\n"
                          + record["text"])
        elif record["event"] == "backmsg":
            backmsgs.append(record)
    return runs, backmsgs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the checkout whose app is traced (default: this one)")
    parser.add_argument("--draw-after-ms", type=int, default=700,
                        help="how long after N is ready the box is drawn (the label bench: 0)")
    parser.add_argument("--cpu-profile", action="store_true",
                        help="also sample Chromium's main thread (DevTools profiler) from each drag's "
                             "mouse-down until the box is listed, and print where its time went by script")
    parser.add_argument("--serve", nargs=2, metavar=("LOG", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.root.resolve())
        return 0

    from bench.label_browser_bench import READY, SURFACE, prepare
    from tests.e2e.browser import ARGS, CHROMIUM, free_port
    from tests.e2e.test_label_browser import fill_login
    from playwright.sync_api import sync_playwright

    samples: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="boxwise-label-trace-") as folder:
        data = Path(folder) / "data"
        data.mkdir()
        os.environ["BOXWISE_DATA"] = str(data)
        made = prepare(data, 2)
        port = free_port()
        log = data / "trace.jsonl"
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(log), str(port),
                                   "--root", str(args.root.resolve())],
                                  env={**os.environ, "BOXWISE_DATA": str(data)},
                                  stdout=open(data / "server.log", "wb"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError((data / "server.log").read_text()) from None
                    time.sleep(0.5)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
                page = browser.new_context(viewport={"width": 1800, "height": 1400}).new_page()
                page.set_default_timeout(60_000)
                page.add_init_script(TRACE_JS)
                page.goto(f"http://127.0.0.1:{port}")
                fill_login(page, "ann")
                cpu: dict[str, dict] = {}
                if args.cpu_profile:
                    cdp = page.context.new_cdp_session(page)
                    cdp.send("Profiler.enable")
                    cdp.send("Profiler.setSamplingInterval", {"interval": 250})
                for name, project in made["projects"].items():
                    picker = page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first
                    picker.click()
                    page.get_by_role("option", name=project).click()
                    page.wait_for_timeout(1500)
                    page.keyboard.press("Escape")
                    header = page.locator("h4").first
                    for number in range(args.repeats):
                        before = header.inner_text() if header.count() else ""
                        page.evaluate("() => document.activeElement && document.activeElement.blur()")
                        page.wait_for_timeout(700)
                        start = page.evaluate("() => performance.timeOrigin + performance.now()")
                        page.keyboard.press("n")
                        page.wait_for_function("(before) => {" + READY + "return " + STAMP.format(
                            "ready() && header() !== before") + "; }", arg=before, polling="raf")
                        done = page.evaluate("() => window.__trace.done")
                        samples.setdefault(f"{name} · N → ready", []).append({"start": start, "done": done})

                        page.wait_for_timeout(args.draw_after_ms)
                        count = int(re.search(r"Boxes \((\d+)", page.get_by_text(re.compile(r"^Boxes \(")).inner_text()).group(1))
                        surface = page.locator(SURFACE).bounding_box()
                        x, y = surface["x"] + 40 + 37 * number, surface["y"] + 40 + 29 * number
                        if args.cpu_profile:
                            cdp.send("Profiler.start")
                        page.mouse.move(x, y)
                        page.mouse.down()
                        page.mouse.move(x + 15, y + 12, steps=3)
                        page.mouse.move(x + 30, y + 24, steps=3)
                        page.mouse.up()
                        page.wait_for_function("(n) => " + STAMP.format(
                            "new RegExp('Boxes \\\\(' + n + ',').test(document.body.innerText)"), arg=count + 1,
                            polling="raf")
                        done = page.evaluate("() => window.__trace.done")
                        if args.cpu_profile:
                            add_profile(cpu.setdefault(name, {}), cdp.send("Profiler.stop")["profile"])
                        marks = page.evaluate("() => window.__trace.marks")
                        release = [m["t"] for m in marks if m["type"] == "pointerup"][-1]
                        samples.setdefault(f"{name} · draw → listed", []).append({"start": release, "done": done})
                        page.wait_for_function("() => {" + READY + "return ready(); }", polling="raf")
                        page.wait_for_timeout(500)
                        page.keyboard.press("s")
                        page.wait_for_timeout(1500)
                first = min(s["start"] for v in samples.values() for s in v) - 1
                traced = page.evaluate(FRAMES_JS, first)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
        runs, backmsgs = read_log(log)

    frames = decode(traced["frames"])
    report = {}
    for name, items in samples.items():
        details = [phases(s["start"], s["done"], frames, runs, traced["tasks"], backmsgs) for s in items]
        report[name] = details
        first_sample = items[0]
        print(f"\n== {name}: timeline of the first sample (ms from the start)")
        events = [(f["t"], f"{f['dir']:3} {f.get('type')} {f.get('element') or ''} {f['size']} B") for f in frames
                  if first_sample["start"] - 50 <= f["t"] <= first_sample["done"] + 50]
        events += [(r["start"], f"run start ({'fragment' if r['fragment'] else 'page'})") for r in runs
                   if first_sample["start"] - 50 <= r["start"] <= first_sample["done"] + 50]
        events += [(r["end"], f"run end ({'fragment' if r['fragment'] else 'page'}), {r['messages']} msgs "
                              f"{r['message_bytes']} B") for r in runs
                   if first_sample["start"] - 50 <= r["end"] <= first_sample["done"] + 50]
        events += [(b["t"], f"server got {b['type']} {b['bytes']} B") for b in backmsgs
                   if first_sample["start"] - 50 <= b["t"] <= first_sample["done"] + 50]
        events += [(t["t"], f"browser long task {t['ms']:.0f} ms") for t in traced["tasks"]
                   if first_sample["start"] - 50 <= t["t"] <= first_sample["done"] + 50]
        for at, text in sorted(events):
            print(f"  {at - first_sample['start']:8.1f}  {text}")
        print(f"  {first_sample['done'] - first_sample['start']:8.1f}  done")
        print(f"\n== {name}: first sample")
        print(json.dumps(details[0], indent=1, ensure_ascii=False))

        def median(key, details=details):
            values = [d[key] for d in details if d[key] is not None]
            return round(statistics.median(values), 1) if values else None
        run_ms = [sum(r["ms"] for r in d["c_runs"]) for d in details]
        print(f"   medians of {len(details)}: total {median('total_ms')} ms; (a) before send "
              f"{median('a_before_send_ms')} ms; (b) upload {median('b_upload_bytes')} B, arrival "
              f"{median('b_arrival_ms')} ms; (c) script runs {statistics.median(run_ms):.1f} ms; "
              f"(d) after the last run {median('d_after_run_ms')} ms, received {median('d_received_bytes')} B; "
              f"browser long tasks {median('browser_long_tasks_ms')} ms")
    for name, spent in cpu.items():
        total = sum(spent.values())
        print(f"\n== {name} · draw → listed: Chromium main thread by script, ms summed over the drags")
        for where, ms in sorted(spent.items(), key=lambda kv: -kv[1])[:14]:
            print(f"  {ms:8.1f}  {100 * ms / total:5.1f}%  {where}")
    print(json.dumps({"load": os.getloadavg(), "report": report}, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
