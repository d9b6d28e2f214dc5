"""Learning and speed parity with the TF OD API on the parity fixture (issue 11, items 3 and 5).

    .venv/bin/python bench/parity_bench.py                       # curve at 500,1000,1500 + timing, ~25 min
    .venv/bin/python bench/parity_bench.py --steps 500,1000,1500 --odapi-python /work/oracle/venv/bin/python
    .venv/bin/python bench/parity_bench.py --timing-only --config small128 --batch-size 4 --rounds 2
    .venv/bin/python bench/parity_bench.py --no-odapi            # Boxwise's curve only
    .venv/bin/python bench/parity_bench.py --timing-only --rounds 4 --odapi-threads 1,2  # OD API at Boxwise's threads
    .venv/bin/python bench/parity_bench.py --curve-rounds 3      # 3 fresh curves of each trainer, mean ± spread

1. Writes `pipeline.config` from `tests/fixtures/odapi/parity/pipeline.config` (or, with
   `--config small128`, from `tests/fixtures/odapi/small128/pipeline.config`) with its input paths
   pointed at the parity TFRecords (400 train, 100 val images, 128x128, 3 classes).
2. Curve (unless `--timing-only`): trains Boxwise with the real CLI, `python -m backend train`,
   to each step count in turn (each a new process resuming from the last checkpoint), and
   evaluates every checkpoint with the CLI's evaluation mode (`--checkpoint_dir`, Boxwise's
   pycocotools COCO evaluator on the 100 val images). Printed beside the OD API's own curve from
   `odapi_curve.json` (model_main_tf2.py on the same config and data), with the differences.
3. Timing: when an OD API python is given (`--odapi-python`) or found at /work/oracle, runs
   `--rounds` pairs of fresh timing runs of `--timing-steps` steps, alternating Boxwise and the
   OD API's `model_main_tf2.py` on the same config, and reports seconds per step of each and
   their ratio per pair. Seconds per step: Boxwise from its `progress.jsonl` (steps 100 to the
   end, after tracing), the OD API from its "per-step time" log lines (each the mean of a
   100-step tf.function call; the first, which includes tracing, left out). The 1-minute load
   average is sampled every 5 s while each run goes; the machine is shared, so compare ratios.
   Boxwise picks its thread counts (`set_op_threads`, logged and reported with each run); the
   OD API runs with TensorFlow's default, or with `--odapi-threads INTRA,INTER` for a comparison
   at equal settings.

4. `--curve-rounds N` (instead of 2 and 3): N rounds, each a fresh, unseeded run of the OD API's
   `model_main_tf2.py` and then of Boxwise (`python -m backend train`), one process at a time,
   each one process to the last step count with a checkpoint at every count (the OD API's
   `--checkpoint_every_n`; its step-0 `ckpt-1`, saved before the model has variables, is
   removed). Every checkpoint of both is scored by the same evaluator, Boxwise's CLI evaluation
   mode (pycocotools; on a Boxwise checkpoint it gave the OD API's own evaluator's figures to 4
   decimals). Prints each run, then mean and min-max per step of both and the difference of the
   means. The JSON is rewritten after every run, so an interrupted bench keeps its finished runs.

JSON goes to bench/out/parity_bench.json (or `--out`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import _cli

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "odapi"
PARITY = FIXTURES / "parity"
ORACLE_PYTHON = Path("/work/oracle/venv/bin/python")
ORACLE_RESEARCH = Path("/work/oracle/src/research")
MAP, MAP50 = "DetectionBoxes_Precision/mAP", "DetectionBoxes_Precision/mAP@.50IOU"
sys.path.insert(0, str(REPO))


# --- config ----------------------------------------------------------------------------------

def write_config(kind: str, path: Path, batch_size: int | None = None) -> Path:
    """The parity config (or small128's architecture) reading the parity TFRecords."""
    from backend.config_document import ConfigDocument
    if kind == "parity":
        text = (PARITY / "pipeline.config").read_text(encoding="utf-8").replace("PARITY_DIR", str(PARITY))
        doc = ConfigDocument(text)
    elif kind == "small128":
        doc = ConfigDocument((FIXTURES / "small128" / "pipeline.config").read_text(encoding="utf-8"))
        label_map = str(PARITY / "label_map.pbtxt")
        for reader, pattern in (("train_input_reader", "train"), ("eval_input_reader", "val")):
            doc.set(f"{reader}.label_map_path", label_map)
            doc.set(f"{reader}.tf_record_input_reader.input_path", str(PARITY / f"{pattern}.record-?????-of-00002"))
        # model_main_tf2 would try to restore it (no fine_tune_checkpoint given): train from scratch.
        doc.remove("train_config.fine_tune_checkpoint_type")
    else:
        raise SystemExit(f"unknown --config {kind!r}: parity or small128")
    if batch_size:
        doc.set("train_config.batch_size", batch_size)
    path.write_text(doc.text, encoding="utf-8")
    return path


# --- machine load ----------------------------------------------------------------------------

class LoadSampler:
    """The 1-minute load average every `every` seconds while a run goes."""

    def __init__(self, every: float = 5.0):
        self.every, self.samples = every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        if not self.samples:
            return {}
        return {"mean": round(statistics.mean(self.samples), 2), "max": round(max(self.samples), 2),
                "min": round(min(self.samples), 2)}


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def run(cmd: list[str], log_path: Path, env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run a command to completion with its output in `log_path`; wall time, load while it ran,
    and `cpu_samples`: (unix time, CPU seconds of the process) every second, from which the CPU
    time of a span of steps is read (robust to other work on the machine, unlike wall time)."""
    start = time.perf_counter()
    samples: list[tuple[float, float]] = []
    with LoadSampler() as load, open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        while proc.poll() is None:
            cpu = process_cpu_seconds(proc.pid)
            if cpu is not None:
                samples.append((time.time(), cpu))
            time.sleep(1.0)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"{cmd[0:4]} failed with exit code {proc.returncode}; end of {log_path}:\n{tail}")
    return {"wall_seconds": round(wall, 1), "load": load.summary(), "cpu_samples": samples}


def cpu_between(samples: list[tuple[float, float]], t0: float, t1: float) -> float | None:
    """CPU seconds the process used between unix times t0 and t1 (linear between samples)."""
    def at(t):
        for (ta, ca), (tb, cb) in zip(samples, samples[1:]):
            if ta <= t <= tb:
                return ca + (cb - ca) * (t - ta) / max(tb - ta, 1e-9)
        return None
    a, b = at(t0), at(t1)
    return None if a is None or b is None else b - a


# --- Boxwise ---------------------------------------------------------------------------------

def boxwise_train(config: Path, model_dir: Path, steps: int, log_path: Path, checkpoint_every_n: int = 0) -> dict:
    cmd = [sys.executable, "-m", "backend", "train", f"--pipeline_config_path={config}",
           f"--model_dir={model_dir}", f"--num_train_steps={steps}", f"--checkpoint_every_n={checkpoint_every_n}"]
    info = run(cmd, log_path, cwd=REPO)
    # The trainer logs the thread counts it chose (backend.training.train.set_op_threads).
    chosen = re.search(r"threads: (.*)", log_path.read_text(encoding="utf-8", errors="replace"))
    info["threads"] = chosen.group(1).strip() if chosen else None
    return info


def boxwise_evaluate(config: Path, model_dir: Path, log_path: Path) -> dict:
    """Evaluation mode of the CLI over every checkpoint in model_dir not scored yet."""
    eval_dir = model_dir / "eval_out"
    cmd = [sys.executable, "-m", "backend", "train", f"--pipeline_config_path={config}",
           f"--model_dir={eval_dir}", f"--checkpoint_dir={model_dir}", "--eval_timeout=1"]
    info = run(cmd, log_path, cwd=REPO)
    info["metrics"] = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
    return info


def boxwise_seconds_per_step(model_dir: Path, info: dict, from_step: int = 100) -> None:
    """Steady seconds per step from progress.jsonl: time between the first logged row at or past
    `from_step` (tracing and warm-up done) and the last row, over the steps between them; and
    the CPU seconds per step over the same span. Stored in `info`."""
    rows = [json.loads(line) for line in (model_dir / "progress.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("phase") == "train"]
    later = [r for r in rows if r["step"] >= from_step]
    if len(later) < 2:
        info["seconds_per_step"] = info["cpu_seconds_per_step"] = None
        return
    steps = later[-1]["step"] - later[0]["step"]
    info["seconds_per_step"] = (later[-1]["time"] - later[0]["time"]) / steps
    cpu = cpu_between(info["cpu_samples"], later[0]["time"], later[-1]["time"])
    info["cpu_seconds_per_step"] = cpu / steps if cpu is not None else None


# --- the OD API ------------------------------------------------------------------------------

def odapi_env(odapi_python: Path) -> dict:
    env = dict(os.environ)
    research = ORACLE_RESEARCH if odapi_python == ORACLE_PYTHON else Path(os.environ.get("ODAPI_RESEARCH", ORACLE_RESEARCH))
    env["PYTHONPATH"] = f"{research}:{research / 'slim'}"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def odapi_train(odapi_python: Path, config: Path, model_dir: Path, steps: int, log_path: Path,
                checkpoint_every_n: int = 100000, threads: tuple[int, int] | None = None) -> dict:
    env = odapi_env(odapi_python)
    if threads:  # TensorFlow reads these when it starts: the OD API at the thread counts given
        env["TF_NUM_INTRAOP_THREADS"], env["TF_NUM_INTEROP_THREADS"] = (str(n) for n in threads)
    main = Path(env["PYTHONPATH"].split(":")[0]) / "object_detection" / "model_main_tf2.py"
    cmd = [str(odapi_python), str(main), f"--pipeline_config_path={config}", f"--model_dir={model_dir}",
           f"--num_train_steps={steps}", f"--checkpoint_every_n={checkpoint_every_n}", "--alsologtostderr"]
    info = run(cmd, log_path, env=env)
    # absl lines: "I1201 10:11:01.980563 140069 model_lib_v2.py:694] Step 200 per-step time 0.165s"
    lines = re.findall(r"^I(\d\d)(\d\d) (\d\d:\d\d:\d\d\.\d+) .*Step (\d+) per-step time ([0-9.]+)s",
                       log_path.read_text(errors="replace"), flags=re.M)
    year = time.localtime().tm_year
    logged = [(time.mktime(time.strptime(f"{year}-{mo}-{d} {hms.split('.')[0]}", "%Y-%m-%d %H:%M:%S"))
               + float("0." + hms.split(".")[1]), int(step), float(sec)) for mo, d, hms, step, sec in lines]
    info["per_step_log"] = [sec for _, _, sec in logged]
    # The first line's 100 steps include tracing: the span starts there.
    info["seconds_per_step"] = statistics.mean(info["per_step_log"][1:]) if len(logged) > 1 else None
    info["cpu_seconds_per_step"] = None
    if len(logged) > 1:
        cpu = cpu_between(info["cpu_samples"], logged[0][0], logged[-1][0])
        info["cpu_seconds_per_step"] = cpu / (logged[-1][1] - logged[0][1]) if cpu is not None else None
    return info


# --- repeated curves of both trainers --------------------------------------------------------

def curve_round(who: str, config: Path, work: Path, index: int, steps: list[int], odapi_python: Path | None) -> dict:
    """One fresh, unseeded training run of `who` ("boxwise" or "odapi") to max(steps) in a single
    process with a checkpoint at every step count of `steps` (both trainers checkpoint at multiples
    of the interval: the steps must be multiples of the first), then Boxwise's CLI evaluation mode
    (pycocotools on the 100 val images) over every checkpoint it left: the same evaluator for both."""
    model_dir = work / f"round{index}-{who}"
    interval = steps[0]
    if any(n % interval for n in steps):
        raise SystemExit(f"--steps {steps}: every count must be a multiple of the first for --curve-rounds")
    log_path = work / f"round{index}-{who}.log"
    if who == "boxwise":
        info = boxwise_train(config, model_dir, steps[-1], log_path, checkpoint_every_n=interval)
    else:
        info = odapi_train(odapi_python, config, model_dir, steps[-1], log_path, checkpoint_every_n=interval)
        drop_first_checkpoint(model_dir)
    info.pop("cpu_samples", None)
    result = boxwise_evaluate(config, model_dir, work / f"round{index}-{who}-eval.log")
    by_step = {r["step"]: r["metrics"] for r in result["metrics"].values()}
    missing = [n for n in steps if n not in by_step]
    if missing:
        raise SystemExit(f"{who} round {index}: no checkpoint at step(s) {missing} (have {sorted(by_step)})")
    points = [{"step": n, "map": by_step[n][MAP], "map50": by_step[n][MAP50]} for n in steps]
    return {"who": who, "round": index, "points": points, "train_wall_seconds": info["wall_seconds"],
            "train_load": info["load"], "eval_wall_seconds": result["wall_seconds"]}


def drop_first_checkpoint(model_dir: Path) -> None:
    """Remove `ckpt-1` of a fresh model_main_tf2 run: it saves it before step 1, before the model
    has variables (only `step` and `save_counter`), and no evaluator can load it."""
    for path in model_dir.glob("ckpt-1.*"):
        path.unlink()
    state = model_dir / "checkpoint"
    lines = [line for line in state.read_text().splitlines() if not line.rstrip().endswith('"ckpt-1"')]
    state.write_text("\n".join(lines) + "\n")


def spread_table(rounds: list[dict], steps: list[int]) -> tuple[list[str], dict]:
    """Mean and min-max per step of each trainer over its rounds, and Boxwise's mean minus the OD API's."""
    summary: dict = {}
    for who in ("boxwise", "odapi"):
        runs = [r for r in rounds if r["who"] == who]
        for n in steps:
            for metric in ("map", "map50"):
                values = [next(p[metric] for p in r["points"] if p["step"] == n) for r in runs]
                if values:
                    summary.setdefault(who, {}).setdefault(n, {})[metric] = {
                        "mean": statistics.mean(values), "min": min(values), "max": max(values), "values": values}
    lines = ["| step | metric | Boxwise mean (min–max) | OD API mean (min–max) | diff of means |",
             "|---:|---|---:|---:|---:|"]
    for n in steps:
        for metric, name in (("map", "mAP"), ("map50", "mAP@0.5")):
            cells = []
            for who in ("boxwise", "odapi"):
                v = summary.get(who, {}).get(n, {}).get(metric)
                cells.append(f"{v['mean']:.3f} ({v['min']:.3f}–{v['max']:.3f})" if v else "–")
            b = summary.get("boxwise", {}).get(n, {}).get(metric)
            o = summary.get("odapi", {}).get(n, {}).get(metric)
            diff = f"{b['mean'] - o['mean']:+.3f}" if b and o else "–"
            lines.append(f"| {n} | {name} | {cells[0]} | {cells[1]} | {diff} |")
    return lines, summary


def repeated_curves(config: Path, work: Path, steps: list[int], rounds: int, odapi_python: Path | None,
                    report: dict) -> None:
    """`rounds` curves of each trainer, one process at a time, alternating OD API and Boxwise so
    both see the same spread of machine load; mean and min-max per step."""
    results = report.setdefault("curve_rounds", [])
    for index in range(1, rounds + 1):
        for who in ("odapi", "boxwise") if odapi_python else ("boxwise",):
            result = curve_round(who, config, work, index, steps, odapi_python)
            results.append(result)
            print(f"round {index} {who:8s} " + "  ".join(
                f"{p['step']}: {p['map']:.3f}/{p['map50']:.3f}" for p in result["points"])
                + f"  (mAP/mAP@0.5; train wall {result['train_wall_seconds']:.0f} s, load {result['train_load']})",
                flush=True)
            lines, summary = spread_table(results, steps)
            report["curve_rounds_summary"] = summary
            report["curve_rounds_table"] = lines
            report["out"].write_text(json.dumps({k: v for k, v in report.items() if k != "out"}, indent=2,
                                                default=str) + "\n")
    print("\n".join(report["curve_rounds_table"]), flush=True)


# --- report ----------------------------------------------------------------------------------

def curve_table(curve: list[dict], odapi_points: dict[int, dict]) -> list[str]:
    lines = ["| step | Boxwise mAP | OD API mAP | diff | Boxwise mAP@0.5 | OD API mAP@0.5 | diff |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for point in curve:
        ref = odapi_points.get(point["step"])
        if ref:
            lines.append(f"| {point['step']} | {point['map']:.3f} | {ref[MAP]:.3f} | {point['map'] - ref[MAP]:+.3f} | "
                         f"{point['map50']:.3f} | {ref[MAP50]:.3f} | {point['map50'] - ref[MAP50]:+.3f} |")
        else:
            lines.append(f"| {point['step']} | {point['map']:.3f} | – | – | {point['map50']:.3f} | – | – |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="500,1000,1500", help="comma-separated step counts to evaluate at")
    _cli.add_training_config(parser, batch_help="override train_config.batch_size")
    parser.add_argument("--odapi-python", type=Path, default=None,
                        help=f"the OD API's python (default {ORACLE_PYTHON} when it exists)")
    parser.add_argument("--no-odapi", action="store_true", help="skip the OD API timing runs")
    parser.add_argument("--timing-only", action="store_true", help="skip the curve")
    parser.add_argument("--timing-steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2, help="alternating Boxwise / OD API timing pairs")
    parser.add_argument("--odapi-threads", default=None, metavar="INTRA,INTER",
                        help="run the OD API's timing runs with these TensorFlow thread counts "
                             "(TF_NUM_INTRAOP_THREADS, TF_NUM_INTEROP_THREADS; default: TensorFlow's)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "parity_bench.json")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--curve-rounds", type=int, default=0,
                        help="instead of timing + one curve: this many fresh unseeded curves of each trainer "
                             "(OD API, then Boxwise, per round), all scored by Boxwise's evaluator; mean and "
                             "min-max per step")
    args = parser.parse_args(argv)
    odapi_threads = None
    if args.odapi_threads:
        try:
            odapi_threads = tuple(int(n) for n in args.odapi_threads.split(","))
        except ValueError:
            odapi_threads = ()
        if len(odapi_threads) != 2 or min(odapi_threads) < 1:
            parser.error(f"--odapi-threads {args.odapi_threads!r}: two positive numbers, INTRA,INTER")
    steps = sorted(int(s) for s in args.steps.split(",") if s.strip())
    odapi_python = None
    if not args.no_odapi:
        odapi_python = args.odapi_python or (ORACLE_PYTHON if ORACLE_PYTHON.exists() else None)

    work = _cli.work_directory("parity_bench_")
    report: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                    "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "load_at_start": [round(x, 2) for x in os.getloadavg()]},
                    "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    try:
        config = write_config(args.config, work / "pipeline.config", args.batch_size)
        print(f"config: {args.config} (batch {args.batch_size or 'as written'}), work dir {work}", flush=True)
        if args.curve_rounds:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            report["out"] = args.out
            repeated_curves(config, work, steps, args.curve_rounds, odapi_python, report)
            report.pop("out")
            report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            report["machine"]["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
            _cli.write_report(args.out, report, default=str)
            return 0

        # Timing first (fresh runs, alternating): the curve's checkpoints don't interfere.
        timing = []
        if odapi_python:
            for index in range(1, args.rounds + 1):
                for who in ("boxwise", "odapi"):
                    model_dir = work / f"time-{who}-{index}"
                    log_path = work / f"time-{who}-{index}.log"
                    if who == "boxwise":
                        info = boxwise_train(config, model_dir, args.timing_steps, log_path)
                        boxwise_seconds_per_step(model_dir, info)
                    else:
                        info = odapi_train(odapi_python, config, model_dir, args.timing_steps, log_path,
                                           threads=odapi_threads)
                        info["threads"] = ("{} per op, {} ops side by side (--odapi-threads)".format(*odapi_threads)
                                           if odapi_threads else "TensorFlow's default")
                    info.update(who=who, round=index, steps=args.timing_steps)
                    info.pop("cpu_samples")
                    timing.append(info)
                    print(f"timing round {index} {who:8s} {info['seconds_per_step']:.4f} s/step  "
                          f"{info['cpu_seconds_per_step'] or float('nan'):.4f} CPU s/step  "
                          f"wall {info['wall_seconds']:6.1f} s  load {info['load']}  threads: {info['threads']}",
                          flush=True)
            report["timing"] = timing
            pairs, cpu_pairs = [], []
            for index in range(1, args.rounds + 1):
                b = next(t for t in timing if t["round"] == index and t["who"] == "boxwise")
                o = next(t for t in timing if t["round"] == index and t["who"] == "odapi")
                pairs.append(round(b["seconds_per_step"] / o["seconds_per_step"], 3))
                if b["cpu_seconds_per_step"] and o["cpu_seconds_per_step"]:
                    cpu_pairs.append(round(b["cpu_seconds_per_step"] / o["cpu_seconds_per_step"], 3))
            report["timing_ratio_boxwise_over_odapi"] = pairs
            report["cpu_ratio_boxwise_over_odapi"] = cpu_pairs

        curve = []
        if not args.timing_only:
            model_dir = work / "curve"
            for n in steps:
                info = boxwise_train(config, model_dir, n, work / f"train-{n}.log", checkpoint_every_n=n)
                info.pop("cpu_samples")
                result = boxwise_evaluate(config, model_dir, work / f"eval-{n}.log")
                scored = max(result["metrics"].values(), key=lambda r: r["step"])
                assert scored["step"] == n, f"latest evaluated checkpoint is at step {scored['step']}, not {n}"
                point = {"step": n, "map": scored["metrics"][MAP], "map50": scored["metrics"][MAP50],
                         "map75": scored["metrics"]["DetectionBoxes_Precision/mAP@.75IOU"],
                         "ar100": scored["metrics"]["DetectionBoxes_Recall/AR@100"],
                         "train_wall_seconds": info["wall_seconds"], "train_load": info["load"],
                         "eval_wall_seconds": result["wall_seconds"]}
                history = [json.loads(line) for line in (model_dir / "progress.jsonl").read_text().splitlines()]
                point["final_losses"] = history[-1]["losses"]
                curve.append(point)
                print(f"step {n:5d}  mAP {point['map']:.3f}  mAP@0.5 {point['map50']:.3f}  total loss "
                      f"{point['final_losses']['total']:.3f}  train wall {info['wall_seconds']:.0f} s  "
                      f"load {info['load']}", flush=True)
            rows = [json.loads(line) for line in (model_dir / "progress.jsonl").read_text().splitlines()]
            starts = {0, *steps}  # each process's first row times its first step, tracing included
            seconds_per_step = [1.0 / r["steps_per_sec"] for r in rows
                                if r.get("phase") == "train" and r["step"] - 1 not in starts]
            report["curve"] = curve
            report["curve_seconds_per_step_median"] = round(statistics.median(seconds_per_step), 4)

        odapi_curve = json.loads((PARITY / "odapi_curve.json").read_text())
        odapi_points = {p["step"]: p for p in odapi_curve["points"]}
        print()
        if curve and args.config == "parity" and not args.batch_size:
            lines = curve_table(curve, odapi_points)
            worst = max(max(abs(p["map"] - odapi_points[p["step"]][MAP]), abs(p["map50"] - odapi_points[p["step"]][MAP50]))
                        for p in curve if p["step"] in odapi_points) if any(p["step"] in odapi_points for p in curve) else None
            report["largest_difference"] = worst
            print("\n".join(lines))
            if worst is not None:
                print(f"largest difference from the OD API: {worst:.3f} (target: within 0.03)")
            print(f"Boxwise s/step over the curve's logged windows (median): {report['curve_seconds_per_step_median']}"
                  f"; the OD API's run of the curve: {odapi_curve['seconds_per_step']}")
        if timing:
            print("\n| round | Boxwise s/step | OD API s/step | ratio | Boxwise CPU s/step | OD API CPU s/step | ratio "
                  "| load (mean 1-min) B / O |")
            print("|---:|---:|---:|---:|---:|---:|---:|---|")
            for index, ratio in enumerate(report["timing_ratio_boxwise_over_odapi"], 1):
                b = next(t for t in timing if t["round"] == index and t["who"] == "boxwise")
                o = next(t for t in timing if t["round"] == index and t["who"] == "odapi")
                cpu_b, cpu_o = b["cpu_seconds_per_step"], o["cpu_seconds_per_step"]
                cpu_ratio = f"{cpu_b / cpu_o:.3f}" if cpu_b and cpu_o else "–"
                print(f"| {index} | {b['seconds_per_step']:.4f} | {o['seconds_per_step']:.4f} | {ratio:.3f} | "
                      f"{cpu_b or 0:.4f} | {cpu_o or 0:.4f} | {cpu_ratio} | {b['load'].get('mean')} / {o['load'].get('mean')} |")
        report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        report["machine"]["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
        _cli.write_report(args.out, report)
    finally:
        _cli.remove_work_directory(work, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
