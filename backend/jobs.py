"""Training and evaluation runs as background processes: start, watch, cancel, resume, re-attach.

A run is a row of `runs` plus its folder `data/runs/<id>/` (the TF OD API `model_dir`). The
trainer runs as its own process group (`start_new_session`), logging to `train.log` in that
folder; the row keeps its pid and the kernel's start time of that pid, so a pid the system
recycled for another program is never mistaken for the run.

Nobody waits on a process. `pump_queue(db)` — called by the Runs page's refresh and at start-up —
settles runs whose process ended (from the trainer's `status.json`, or as failed with the
reason), escalates overdue cancels to SIGKILL, and starts queued runs in order while fewer
than `max_concurrent_runs()` are running.

States: queued → running → succeeded | failed | cancelled; a cancelled or failed training run
can be resumed (queued again, same folder: the trainer continues from its latest checkpoint).
Kinds: `train`, `eval` (the trainer's evaluation mode over a training run's checkpoints) and
`export` (the exporter, whose success registers a model).
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import sqlite_utils

from backend import config_check, config_doctor, configs, events, pipeline_config, server_settings, settings
from backend.auth import require
from backend.db import now, one, transaction
from backend.errors import BoxwiseError, Invalid, NotFound
from backend.training import progress

log = logging.getLogger("boxwise.jobs")
ROOT = Path(__file__).resolve().parent.parent
ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")
KINDS = ("train", "eval", "export")
LOG_FILE = "train.log"
EVAL_TIMEOUT = 300
CONFIG_FILE = "pipeline.config"

# Popen objects of the processes this dashboard started, so finished ones are reaped (no
# zombies) and their exit code is known. After a restart the table is empty: the pid and its
# start time in the row are then all there is, which is enough to tell alive from gone.
_children: dict[int, subprocess.Popen] = {}


def max_concurrent_runs() -> int:
    """How many runs may use the machine at once (`BOXWISE_MAX_RUNS`, default 1)."""
    return max(1, int(os.environ.get("BOXWISE_MAX_RUNS", "1")))


def trainer_niceness() -> int:
    """How much lower the CPU priority of trainers, evaluators and exporters is than the
    dashboard's (`BOXWISE_TRAIN_NICE`, default 10; 0 keeps the same priority)."""
    return max(0, min(19, int(os.environ.get("BOXWISE_TRAIN_NICE", "10"))))


def trainer_threads() -> int:
    """TensorFlow's intra-op and inter-op thread counts for launched processes
    (`BOXWISE_TRAIN_THREADS`, default: the logical CPUs but one, at least 1), so the dashboard
    keeps a core while a run goes on."""
    default = max(1, (os.cpu_count() or 1) - 1)
    return max(1, int(os.environ.get("BOXWISE_TRAIN_THREADS", str(default))))


def child_environment() -> dict[str, str]:
    """The environment a launched process runs with: the data folder, unbuffered output, and
    TensorFlow's thread limits (`trainer_threads`) unless already set."""
    threads = str(trainer_threads())
    return {"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads,
            "OMP_NUM_THREADS": threads, **os.environ,
            "BOXWISE_DATA": str(settings.data_dir()), "PYTHONUNBUFFERED": "1"}


def reap_children() -> list[int]:
    """Collect the exit status of every process this dashboard started that has ended (runs,
    evaluations, exports and batch predictions), so none stays a `<defunct>` zombie until a
    page happens to look at it. Returns the pids reaped now. Exit codes stay known (`Popen`
    keeps them) until the run is settled."""
    from backend import predictions
    reaped = []
    for table in (_children, predictions._children):
        for pid, child in list(table.items()):
            if child.returncode is None and child.poll() is not None:
                reaped.append(pid)
    return reaped


def cancel_grace_seconds() -> float:
    """How long a cancelled trainer gets to checkpoint before SIGKILL (`BOXWISE_CANCEL_GRACE`)."""
    return float(os.environ.get("BOXWISE_CANCEL_GRACE", "60"))


# ---------------------------------------------------------------- processes


def process_start_time(pid: int) -> float | None:
    """The kernel's start time of `pid` (clock ticks since boot, field 22 of /proc/<pid>/stat),
    or None when there is no such live process (gone, or a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    state, start = fields[0], fields[19]
    if state in ("Z", "X"):
        return None
    return float(start)


def process_alive(pid: int | None, start_time: float | None) -> bool:
    """True when `pid` is running and is the same process that was started (same start time)."""
    if not pid:
        return False
    if pid in _children:
        # Our own child: alive until it can be reaped. (A process killed while its threads are
        # still being torn down already shows as a zombie in /proc but has no exit code yet.)
        return _reap(pid) is None
    started = process_start_time(pid)
    return started is not None and (start_time is None or started == start_time)


def _reap(pid: int) -> int | None:
    """The exit code of a child of this process that has ended (reaping it), else None."""
    child = _children.get(pid)
    if child is None:
        return None
    return child.poll()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------- rows


def get_run(db: sqlite_utils.Database, run_id: int) -> dict:
    row = one(db, "select r.*, u.username as created_by_name from runs r "
                  "left join users u on u.id = r.created_by where r.id = ?", [run_id])
    if row is None:
        raise NotFound(f"no run {run_id}")
    return row


def doctor_warnings(run: dict) -> list[dict]:
    """The config doctor's warnings stored when the run was launched (`Finding` dicts)."""
    return json.loads(run.get("doctor_warnings") or "[]")


def list_runs(db: sqlite_utils.Database, project_id: int | None = None,
              kind: str | None = "train") -> list[dict]:
    """Runs newest first, with config name and version, optionally of one project and kind."""
    where, params = [], []
    if project_id is not None:
        where.append("r.project_id = ?")
        params.append(project_id)
    if kind is not None:
        where.append("r.kind = ?")
        params.append(kind)
    sql = ("select r.*, c.name as config_name, c.version as config_version, "
           "u.username as created_by_name from runs r "
           "left join configs c on c.id = r.config_id left join users u on u.id = r.created_by "
           + (f"where {' and '.join(where)} " if where else "") + "order by r.id desc")
    return list(db.query(sql, params))


def run_title(run: dict) -> str:
    """A label that stays the same while the run's state changes (for pickers)."""
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(run["created_at"])) if run["created_at"] else ""
    return f"#{run['id']} {run['kind']} · dataset version {run['export_id']} · {started}"


def _update(db: sqlite_utils.Database, run_id: int, **values: Any) -> None:
    db["runs"].update(run_id, values)


def _insert_run(db: sqlite_utils.Database, actor: dict, project_id: int, *, kind: str,
                text: str | None, export_id: int | None = None, config_id: int | None = None,
                parent_run_id: int | None = None, fine_tune_checkpoint: str | None = None,
                num_train_steps: int | None = None, runner: str | None = None,
                model_dir: Path | None = None) -> dict:
    """A queued row and its folder with `pipeline.config` written in; not started yet."""
    with transaction(db):
        run_id = db["runs"].insert({
            "project_id": project_id, "export_id": export_id, "config_id": config_id,
            "kind": kind, "status": "queued", "parent_run_id": parent_run_id,
            "fine_tune_checkpoint": fine_tune_checkpoint, "num_train_steps": num_train_steps,
            "runner": runner, "created_at": now(), "queued_at": now(),
            "created_by": actor.get("id"), "attempts": 0}).last_pk
        folder = settings.subdir("runs") / str(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        if text is not None:
            (folder / CONFIG_FILE).write_text(text, encoding="utf-8")
        _update(db, run_id, model_dir=str(model_dir or folder), log_path=str(folder / LOG_FILE))
    return get_run(db, run_id)


# ---------------------------------------------------------------- starting runs


def start_run(db: sqlite_utils.Database, actor: dict, project_id: int, *, export_id: int,
              config_id: int, num_train_steps: int | None = None,
              fine_tune_checkpoint: str | None = None, parent_run_id: int | None = None,
              runner: str | None = None, start_from: tuple[str, int | None] | None = None) -> dict:
    """Queue a training run of saved config `config_id` on dataset version `export_id`.

    `start_from` (`("scratch", None)`, `("run", run_id)`, `("starting_point", id)`) overrides
    where the config starts training from (`zoo.start_from`); a starting point also brings its
    architecture and input size.

    The config is filled from the dataset version (paths, label map, num_classes) and
    validated; any problem refuses the run with every problem listed. The config doctor
    (`config_doctor.examine`) then checks it against the version's boxes: its errors refuse
    the run, its warnings are stored with it (`doctor_warnings`). With `runner`, the name
    of an external runner in the server settings (`server_settings.runners`; admins only), the
    run uses that runner's interpreter and TF OD API `model_main_tf2.py`; no caller ever
    passes an interpreter or a script. The run starts at once when a slot is free, else waits
    its turn in the queue.
    """
    require(actor, "train")
    if runner:
        require(actor, "external_runner")
        server_settings.runner(runner)  # refuses an unknown name before anything is written
    config = configs.get_config(db, config_id)
    version = configs.dataset_version(db, export_id)
    if config["project_id"] != project_id or version.project_id != project_id:
        raise Invalid("the config and the dataset version must belong to the run's project")
    external = bool(runner)
    text = configs.fill_from_dataset_version(config["text"], version)
    if fine_tune_checkpoint:
        text = configs.set_fine_tune_checkpoint(text, fine_tune_checkpoint)
    if start_from is not None and start_from[0] != "config":
        from backend import zoo
        text = zoo.start_from(db, text, *start_from)
    # The run records where it starts from as its config says, whoever wrote it there.
    fine_tune_checkpoint = _config_value(text, "train_config.fine_tune_checkpoint") or None
    problems = config_check.check(text, version, actor=actor, external=external)
    if problems:
        raise Invalid("the config cannot train on dataset version "
                      f"{version.id}:\n" + "\n".join(f"- {p}" for p in problems))
    report = config_doctor.examine(text, version, num_steps=num_train_steps)
    if report.errors:
        raise Invalid(f"the config doctor refuses the run on dataset version {version.id}:\n"
                      + "\n".join(f"- {f.message}" for f in report.errors))
    run = _insert_run(db, actor, project_id, kind="train", text=text, export_id=export_id,
                      config_id=config_id, parent_run_id=parent_run_id,
                      fine_tune_checkpoint=fine_tune_checkpoint, num_train_steps=num_train_steps,
                      runner=runner or None)
    _update(db, run["id"], doctor_warnings=json.dumps(report.to_json(), ensure_ascii=False))
    pump_queue(db)
    return get_run(db, run["id"])


def _config_value(text: str, path: str):
    try:
        return pipeline_config.ConfigDocument(text).get(path)
    except Exception:  # noqa: BLE001 - absent
        return None


def retrain_run(db: sqlite_utils.Database, actor: dict, run_id: int, *,
                export_id: int | None = None, config_id: int | None = None,
                num_train_steps: int | None = None) -> dict:
    """A new run on the newest dataset version (or `export_id`) starting from run `run_id`'s
    latest checkpoint as a detection fine-tune, with the same config unless told otherwise."""
    require(actor, "train")
    source = get_run(db, run_id)
    checkpoint = latest_checkpoint(source["model_dir"])
    if checkpoint is None:
        raise Invalid(f"run {run_id} has no checkpoint yet to retrain from")
    if export_id is None:
        export_id = configs.latest_dataset_version(db, source["project_id"]).id
    return start_run(db, actor, source["project_id"], export_id=export_id,
                     config_id=config_id or source["config_id"], num_train_steps=num_train_steps,
                     fine_tune_checkpoint=checkpoint, parent_run_id=run_id,
                     runner=source["runner"])


def resume_run(db: sqlite_utils.Database, actor: dict, run_id: int,
               num_train_steps: int | None = None) -> dict:
    """Queue a cancelled or failed training run again in its own folder: the trainer continues
    from the latest checkpoint there."""
    require(actor, "train")
    with transaction(db):
        run = get_run(db, run_id)
        if run["kind"] != "train":
            raise Invalid(f"run {run_id} is an {run['kind']} job; start a new one instead")
        if run["status"] not in ("cancelled", "failed"):
            raise Invalid(f"run {run_id} is {run['status']}: only cancelled or failed runs resume")
        if run["runner"] or run["script"]:
            require(actor, "external_runner")
        values = {"status": "queued", "queued_at": now(), "error": None, "finished_at": None,
                  "cancel_requested_at": None, "returncode": None}
        if num_train_steps:
            values["num_train_steps"] = num_train_steps
        _update(db, run_id, **values)
    pump_queue(db)
    return get_run(db, run_id)


def start_evaluation(db: sqlite_utils.Database, actor: dict, run_id: int) -> dict:
    """Queue the trainer's evaluation mode over training run `run_id`'s checkpoints; metrics land
    in the training run's folder (`eval/`), so they show beside its curves."""
    require(actor, "train")
    source = get_run(db, run_id)
    if source["kind"] != "train":
        raise Invalid(f"run {run_id} is not a training run")
    if latest_checkpoint(source["model_dir"]) is None:
        raise Invalid(f"run {run_id} has no checkpoint to evaluate yet")
    doc = pipeline_config.ConfigDocument.load(Path(source["model_dir"], CONFIG_FILE))
    doc.set("eval_config.include_metrics_per_category", True)  # the Runs page shows AP per class
    run = _insert_run(db, actor, source["project_id"], kind="eval", text=doc.text,
                      export_id=source["export_id"], config_id=source["config_id"],
                      parent_run_id=run_id, model_dir=Path(source["model_dir"]) / EVALUATION_DIR)
    pump_queue(db)
    return get_run(db, run["id"])


def export_model(db: sqlite_utils.Database, actor: dict, run_id: int, which: str = "latest",
                 name: str | None = None) -> dict:
    """Queue the exporter on run `run_id`'s `latest` or `best` (highest mAP) checkpoint; when it
    succeeds the SavedModel is registered as a model of the project."""
    require(actor, "train")
    source = get_run(db, run_id)
    if which == "best":
        best = best_checkpoint(source)
        if best is None:
            raise Invalid(f"run {run_id} has no evaluated checkpoint: evaluate it first, or export the latest")
        checkpoint = best["checkpoint"]
    elif which == "latest":
        checkpoint = latest_checkpoint(source["model_dir"])
    else:
        raise Invalid(f"export which checkpoint? 'latest' or 'best', not {which!r}")
    if checkpoint is None:
        raise Invalid(f"run {run_id} has no checkpoint to export yet")
    text = Path(source["model_dir"], CONFIG_FILE).read_text(encoding="utf-8")
    run = _insert_run(db, actor, source["project_id"], kind="export", text=text,
                      export_id=source["export_id"], config_id=source["config_id"],
                      parent_run_id=run_id, fine_tune_checkpoint=checkpoint)
    # The exporter reads a checkpoint directory: one whose `checkpoint` file names the chosen one.
    chosen = Path(run["model_dir"]) / "checkpoint_to_export"
    chosen.mkdir(exist_ok=True)
    (chosen / "checkpoint").write_text(f'model_checkpoint_path: "{checkpoint}"\n'
                                       f'all_model_checkpoint_paths: "{checkpoint}"\n')
    (chosen.parent / "model_name.txt").write_text(name or f"run {run_id} {Path(checkpoint).name}")
    pump_queue(db)
    return get_run(db, run["id"])


def _command(run: dict) -> list[str]:
    folder = Path(run["log_path"]).parent
    config = str(folder / CONFIG_FILE)
    if run["kind"] == "export":
        return [sys.executable, "-m", "backend", "export-model", "--input_type", "image_tensor",
                "--pipeline_config_path", config,
                "--trained_checkpoint_dir", str(folder / "checkpoint_to_export"),
                "--output_directory", str(folder / "exported")]
    if run["kind"] == "eval":
        # Checkpoints evaluated before are skipped; while the training run goes on, new ones
        # are evaluated as they appear, until it ends (or none comes for EVAL_TIMEOUT seconds).
        evaluation = Path(run["model_dir"])
        return [sys.executable, "-m", "backend", "train", "--pipeline_config_path", config,
                "--model_dir", str(evaluation), "--checkpoint_dir", str(evaluation.parent),
                "--eval_timeout", str(EVAL_TIMEOUT)]
    if run["runner"]:
        # Looked up at every launch: the server settings are the only source of the command.
        chosen = server_settings.runner(run["runner"])
        head = [chosen["python"], chosen["script"]]
    elif run["script"]:
        raise Invalid("this run names an interpreter and script typed by a user (an older "
                      "Boxwise); start it again with a runner from the server settings")
    else:
        head = [sys.executable, "-m", "backend", "train"]
    command = head + ["--pipeline_config_path", config, "--model_dir", run["model_dir"]]
    if run["num_train_steps"]:
        command += ["--num_train_steps", str(run["num_train_steps"])]
    if run["runner"]:
        command.append("--alsologtostderr")  # absl: the TF OD API's step logs into the run's log
    return command


def _launch(db: sqlite_utils.Database, run: dict) -> None:
    """Start a queued run's process (inside the caller's transaction) and record it."""
    folder = Path(run["log_path"]).parent
    model_dir = Path(run["model_dir"])
    if run["kind"] == "train":
        # A resumed run's old status must not settle the new attempt.
        (model_dir / progress.STATUS_FILE).unlink(missing_ok=True)
    else:
        (folder / progress.STATUS_FILE).unlink(missing_ok=True)
    attempt = (run["attempts"] or 0) + 1
    try:
        command = _command(run)
    except BoxwiseError as exc:
        _update(db, run["id"], status="failed", attempts=attempt, finished_at=now(), error=str(exc))
        return
    env = child_environment()
    with open(run["log_path"], "ab") as log:
        log.write(f"=== attempt {attempt} at {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                  f"{shlex.join(command)}\n".encode())
        log.flush()
        try:
            child = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            _update(db, run["id"], status="failed", attempts=attempt, finished_at=now(),
                    command=json.dumps(command), error=f"could not start {command[0]!r}: {exc}")
            return
    _children[child.pid] = child
    try:
        # Lower priority before the child starts its threads (they inherit it): the dashboard
        # stays responsive while a run trains.
        os.setpriority(os.PRIO_PROCESS, child.pid,
                       min(19, os.getpriority(os.PRIO_PROCESS, 0) + trainer_niceness()))
    except OSError:
        pass  # already gone: settled as failed with its log
    _update(db, run["id"], status="running", pid=child.pid,
            pid_start_time=process_start_time(child.pid), command=json.dumps(command),
            started_at=now(), attempts=attempt, error=None, returncode=None, finished_at=None)


_watchers: dict[str, threading.Thread] = {}
_watchers_lock = threading.Lock()


def start_queue_watcher(interval: float = 5.0) -> None:
    """Pump the queue every `interval` seconds in a daemon thread of this process (once per
    database), so queued runs start and ended ones settle even when nobody has the Runs page open."""
    path = str(settings.db_path())
    with _watchers_lock:
        if path in _watchers and _watchers[path].is_alive():
            return

        def watch() -> None:
            from backend.db import connect
            db = connect(path)
            while Path(path).exists():
                try:
                    reap_children()
                    pump_queue(db)
                except Exception:
                    log.exception("pumping the run queue failed")
                time.sleep(interval)

        _watchers[path] = threading.Thread(target=watch, name=f"boxwise-run-queue {path}", daemon=True)
        _watchers[path].start()


def pump_queue(db: sqlite_utils.Database) -> list[int]:
    """Settle ended runs, then start queued runs oldest first while slots are free.
    Returns the ids started. Safe to call from many sessions at once."""
    settle_runs(db)
    started = []
    with transaction(db):
        running = one(db, "select count(*) as n from runs where status = 'running'")["n"]
        free = max_concurrent_runs() - running
        if free > 0:
            queued = list(db.query("select * from runs where status = 'queued' "
                                   "order by queued_at, id limit ?", [free]))
            for run in queued:
                _launch(db, run)
                started.append(run["id"])
    return started


# ---------------------------------------------------------------- watching and settling


def settle_runs(db: sqlite_utils.Database) -> list[int]:
    """Re-attach to running runs: live processes stay running (an overdue cancel is escalated
    to SIGKILL); ended ones are settled from their status file or marked failed with the
    reason. Returns the ids settled. Called at start-up and by every refresh."""
    settled = []
    for run in list(db.query("select * from runs where status = 'running'")):
        if process_alive(run["pid"], run["pid_start_time"]):
            asked = run["cancel_requested_at"]
            if asked and time.time() - asked > cancel_grace_seconds():
                _signal_group(run["pid"], signal.SIGKILL)
            continue
        with transaction(db):
            current = one(db, "select status from runs where id = ?", [run["id"]])
            if current["status"] != "running":
                continue  # another session settled it first
            _update(db, run["id"], **_final_state(run))
        settled.append(run["id"])
        if run["kind"] == "export":
            _register_export(db, get_run(db, run["id"]))
    return settled


def _status_dir(run: dict) -> Path:
    """Where a run's own status file is: the model_dir for training, its folder otherwise."""
    return Path(run["model_dir"]) if run["kind"] == "train" else Path(run["log_path"]).parent


def _final_state(run: dict) -> dict[str, Any]:
    returncode = _reap(run["pid"]) if run["pid"] else None
    _children.pop(run["pid"], None)
    status = progress.read_status(_status_dir(run))
    if run["kind"] == "eval":
        # Evaluation writes into the training run's model_dir; its own outcome is its exit code.
        status = None
    values: dict[str, Any] = {"finished_at": now(), "returncode": returncode}
    if status and status.get("state") in FINAL:
        values.update(status=status["state"], error=status.get("error"))
    elif run["cancel_requested_at"]:
        values.update(status="cancelled", error="stopped by cancel (the process was killed "
                                                 "before it wrote its status)")
    elif returncode == 0 or (run["kind"] == "eval" and returncode is None and _evaluated_latest(run)):
        values.update(status="succeeded", error=None)
    elif run["kind"] == "export" and (Path(run["log_path"]).parent / "exported" / "saved_model").exists() \
            and returncode is None:
        values.update(status="succeeded", error=None)
    else:
        if returncode is None:
            how = "its exit code is unknown (it ended while the dashboard was not watching)"
        elif returncode < 0:
            how = f"it was killed by {signal.Signals(-returncode).name}"
        else:
            how = f"it exited with code {returncode}"
        last = log_tail(run, 1)
        values.update(status="failed",
                      error=f"the process (pid {run['pid']}) ended without writing its status: "
                            f"{how}" + (f"; last log line: {last[-1]}" if last else ""))
    return values


def _evaluated_latest(run: dict) -> bool:
    """Whether an evaluation job that ended unwatched (no exit code to read) got through: the
    metrics file of its training run covers that run's newest checkpoint."""
    training_dir = Path(run["model_dir"]).parent
    latest = latest_checkpoint(training_dir)
    done = {Path(entry["checkpoint"]).name for entry in evaluations({"model_dir": str(training_dir)})}
    return latest is not None and Path(latest).name in done


def cancel_run(db: sqlite_utils.Database, actor: dict, run_id: int) -> dict:
    """Cancel a queued run at once; ask a running one to stop (SIGTERM to its process group:
    the trainer checkpoints and exits). SIGKILL follows after the grace period."""
    require(actor, "train")
    with transaction(db):
        run = get_run(db, run_id)
        if run["status"] == "queued":
            _update(db, run_id, status="cancelled", finished_at=now(), error="cancelled before it started")
            return get_run(db, run_id)
        if run["status"] != "running":
            raise Invalid(f"run {run_id} is {run['status']}: there is nothing to cancel")
        if process_alive(run["pid"], run["pid_start_time"]):
            _signal_group(run["pid"], signal.SIGTERM)
        _update(db, run_id, cancel_requested_at=run["cancel_requested_at"] or now())
    return get_run(db, run_id)


def wait_for_run(db: sqlite_utils.Database, run_id: int, timeout: float = 600,
                 interval: float = 0.5) -> dict:
    """Poll until run `run_id` has ended (for the command line and scripts; never the page)."""
    deadline = time.time() + timeout
    while True:
        pump_queue(db)
        run = get_run(db, run_id)
        if run["status"] in FINAL or time.time() > deadline:
            return run
        time.sleep(interval)


# ---------------------------------------------------------------- what a run has produced


def checkpoints(model_dir: str | Path) -> list[tuple[int, str]]:
    """`(N, prefix)` of every `ckpt-N` in `model_dir`, oldest first."""
    found = []
    for index in Path(model_dir).glob("ckpt-*.index"):
        number = index.name[len("ckpt-"):-len(".index")]
        if number.isdigit():
            found.append((int(number), str(index.with_suffix(""))))
    return sorted(found)


def latest_checkpoint(model_dir: str | Path) -> str | None:
    """The prefix of the newest checkpoint (`.../ckpt-7`), or None."""
    found = checkpoints(model_dir)
    return found[-1][1] if found else None


def run_progress(run: dict) -> dict[str, Any] | None:
    """The latest progress snapshot: the trainer's progress file, or for other trainers the
    TensorBoard events in `model_dir/train`."""
    snapshot = progress.read_progress(run["model_dir"])
    if snapshot is None and (run.get("runner") or run.get("script")):
        history = events.training_history(Path(run["model_dir"]) / "train")
        snapshot = history[-1] if history else None
    return snapshot


def run_history(run: dict) -> list[dict[str, Any]]:
    history = progress.read_history(run["model_dir"])
    if not history and (run.get("runner") or run.get("script")):
        history = events.training_history(Path(run["model_dir"]) / "train")
    return history


def progress_summary(run: dict) -> dict[str, Any]:
    """What the live view shows: step, total, fraction, ETA seconds, rates, losses, device."""
    snapshot = run_progress(run) or {}
    step = snapshot.get("step") or 0
    total = snapshot.get("total_steps") or run["num_train_steps"] or _config_steps(run) or 0
    rate = snapshot.get("steps_per_sec") or 0
    return {
        "step": step, "total_steps": total,
        "fraction": min(1.0, step / total) if total else 0.0,
        "eta_seconds": (total - step) / rate if rate and total and run["status"] == "running" else None,
        "steps_per_sec": rate, "images_per_sec": snapshot.get("images_per_sec"),
        "learning_rate": snapshot.get("learning_rate"), "losses": snapshot.get("losses") or {},
        "devices": snapshot.get("devices") or [], "phase": snapshot.get("phase"),
        "elapsed_seconds": (snapshot.get("time") or 0) - (snapshot.get("started_at") or 0)
        if snapshot.get("started_at") else None,
    }


def _config_steps(run: dict) -> int | None:
    """train_config.num_steps of the run's config (for trainers without a progress file)."""
    path = Path(run["log_path"] or "").parent / CONFIG_FILE
    try:
        return int(pipeline_config.ConfigDocument.load(path).get("train_config.num_steps"))
    except (BoxwiseError, TypeError, ValueError):
        return None


def loss_curves(run: dict) -> list[dict[str, Any]]:
    """Long-form rows `{step, curve, value}` for the loss and learning-rate charts."""
    rows = []
    for snapshot in run_history(run):
        for name, value in (snapshot.get("losses") or {}).items():
            if value is not None:
                rows.append({"step": snapshot["step"], "curve": name, "value": value})
        if snapshot.get("learning_rate") is not None:
            rows.append({"step": snapshot["step"], "curve": "learning_rate",
                         "value": snapshot["learning_rate"]})
    return rows


RESTORE_REPORT_FILE = "restore_report.json"  # written by backend/training/restore.py, one entry per start


def restore_reports(run: dict) -> list[dict[str, Any]]:
    """What each start of the run restored (`[{step, kind, source, restored, variables, parts,
    summary, ...}]`, oldest first); empty before the trainer wrote one."""
    if not run.get("model_dir"):
        return []
    try:
        value = json.loads((Path(run["model_dir"]) / RESTORE_REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


def restore_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per part of the network (backbone, fpn, ...): variables and parameters restored."""
    return [{"part": name, "restored": f"{part.get('restored', 0)} of {part.get('variables', 0)}",
             "parameters restored": f"{part.get('restored_parameters', 0):,} of {part.get('parameters', 0):,}"}
            for name, part in (report.get("parts") or {}).items() if part.get("variables")]


def log_tail(run: dict, lines: int = 40) -> list[str]:
    """The last `lines` lines of the run's log."""
    path = Path(run["log_path"] or "")
    if not path.is_file():
        return []
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64_000))
        text = handle.read().decode("utf-8", errors="replace")
    return [line for line in text.splitlines() if line.strip()][-lines:]


EVALUATION_DIR = "evaluation"
MAP = "DetectionBoxes_Precision/mAP"
_PER_CLASS = "DetectionBoxes_Precision/mAP ByCategory/"


def evaluations(run: dict) -> list[dict[str, Any]]:
    """Metrics of each evaluated checkpoint of a training run, by step: `{step, checkpoint (prefix
    path), num_images, metrics: {tag: value}, per_class: {class: AP}, pr_curves: {class:
    [precision at evaluation.RECALL_POINTS]}}`, from the `metrics.json`
    the trainer's evaluation mode keeps in `model_dir/evaluation/`."""
    path = Path(run["model_dir"]) / EVALUATION_DIR / "metrics.json"
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    out = []
    for name, entry in loaded.items():
        metrics = entry.get("metrics") or {}
        out.append({
            "step": int(entry.get("step") or 0), "num_images": entry.get("num_images"),
            "checkpoint": str(Path(run["model_dir"]) / (entry.get("checkpoint") or name)),
            "metrics": {k: v for k, v in metrics.items() if not k.startswith(_PER_CLASS)},
            "per_class": {k[len(_PER_CLASS):]: v for k, v in metrics.items() if k.startswith(_PER_CLASS)},
            "pr_curves": entry.get("pr_curves") or {}})
    return sorted(out, key=lambda e: e["step"])


def best_checkpoint(run: dict, metric: str = MAP) -> dict | None:
    """The evaluated checkpoint with the highest `metric` that still exists, or None."""
    scored = [e for e in evaluations(run) if e["metrics"].get(metric) is not None
              and e.get("checkpoint") and configs.checkpoint_exists(e["checkpoint"])]
    return max(scored, key=lambda e: e["metrics"][metric]) if scored else None


def _register_export(db: sqlite_utils.Database, run: dict) -> None:
    """A succeeded export becomes a model of the project (the models registry checks the
    SavedModel first); a refused one turns the export job into a failure saying why."""
    if run["status"] != "succeeded":
        return
    from backend import auth, models  # the registry reads SavedModel protos: TensorFlow, lazily
    folder = Path(run["log_path"]).parent
    actor = auth.get_user(db, run["created_by"]) if run["created_by"] else auth.CLI_ACTOR
    try:
        models.register_run(db, actor, run["parent_run_id"], folder / "exported",
                            name=(folder / "model_name.txt").read_text(encoding="utf-8"))
    except (BoxwiseError, PermissionError) as exc:
        _update(db, run["id"], status="failed", error=f"the export could not be registered: {exc}")


# ---------------------------------------------------------------- views for the Runs page


def format_duration(seconds: float | None) -> str:
    """`1 h 02 min`, `3 min 05 s`, `42 s`; `—` when unknown."""
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def training_seconds(run: dict) -> float | None:
    """Wall time the run has trained so far (all attempts, from its progress history)."""
    history = run_history(run)
    if not history:
        return None
    total, start, previous = 0.0, history[0].get("time", 0), history[0].get("time", 0)
    for snapshot in history[1:]:
        now_ = snapshot.get("time", previous)
        if snapshot.get("step", 0) <= 1 or now_ - previous > 600:
            total += previous - start  # a new attempt (resume) or a long gap: count them apart
            start = now_
        previous = now_
    return total + previous - start


def evaluation_rows(run: dict) -> list[dict[str, Any]]:
    """`{step, metric, value}` for every evaluated checkpoint's COCO metrics (table and chart)."""
    return [{"step": e["step"], "metric": name, "value": value}
            for e in evaluations(run) for name, value in sorted(e["metrics"].items())]


def per_class_rows(run: dict) -> list[dict[str, Any]]:
    """`{class, AP}` of the newest evaluated checkpoint that has per-class AP."""
    latest = next((e for e in reversed(evaluations(run)) if e["per_class"]), None)
    return [{"class": name, "AP": value} for name, value in (latest or {"per_class": {}})["per_class"].items()]


def pr_curve_rows(run: dict) -> tuple[int | None, list[dict[str, Any]]]:
    """`(step, [{class, recall, precision}])`: the precision-recall curves (IoU 0.5) of the
    newest evaluated checkpoint that has them, for a line chart; `(None, [])` before any."""
    from backend.evaluation import RECALL_POINTS
    latest = next((e for e in reversed(evaluations(run)) if e["pr_curves"]), None)
    if latest is None:
        return None, []
    return latest["step"], [{"class": name, "recall": recall, "precision": precision}
                            for name, curve in sorted(latest["pr_curves"].items())
                            for recall, precision in zip(RECALL_POINTS, curve)]


def run_table(db: sqlite_utils.Database, project_id: int) -> list[dict[str, Any]]:
    """One row per training run for the run list: status, progress, config, dataset, best mAP."""
    rows = []
    queue = [r["id"] for r in db.query("select id from runs where status = 'queued' order by queued_at, id")]
    for run in list_runs(db, project_id):
        summary = progress_summary(run)
        best = best_checkpoint(run)
        rows.append({
            "run": run["id"],
            "status": f"queued ({queue.index(run['id']) + 1} in line)" if run["id"] in queue else run["status"],
            "step": f"{summary['step']}/{summary['total_steps']}" if summary["total_steps"] else "",
            "config": f"{run['config_name']} v{run['config_version']}" if run["config_name"] else "",
            "dataset version": run["export_id"], "from run": run["parent_run_id"],
            "best mAP": best["metrics"][MAP] if best else None,
            "by": run["created_by_name"] or "command line", "error": run["error"] or ""})
    return rows


def compare_runs(db: sqlite_utils.Database, run_ids: list[int]) -> list[dict[str, Any]]:
    """Side-by-side facts of runs: dataset version, config, steps, training time, best mAP."""
    out = []
    for run_id in run_ids:
        run = get_run(db, run_id)
        summary = progress_summary(run)
        best = best_checkpoint(run)
        config = configs.get_config(db, run["config_id"]) if run["config_id"] else None
        out.append({
            "run": run_id, "status": run["status"], "dataset version": run["export_id"],
            "config": configs.config_title(config) if config else "",
            "steps": summary["step"], "training time": format_duration(training_seconds(run)),
            "final loss": summary["losses"].get("total"),
            "best mAP": best["metrics"].get(MAP) if best else None,
            "best mAP@.50IOU": best["metrics"].get("DetectionBoxes_Precision/mAP@.50IOU") if best else None,
            "best checkpoint": Path(best["checkpoint"]).name if best else "",
            "from checkpoint": run["fine_tune_checkpoint"] or ""})
    return out


def config_diff(db: sqlite_utils.Database, run_a: int, run_b: int) -> str:
    """The unified diff between the `pipeline.config`s two runs trained with."""
    texts = []
    for run_id in (run_a, run_b):
        path = Path(get_run(db, run_id)["model_dir"]) / CONFIG_FILE
        texts.append(path.read_text(encoding="utf-8") if path.is_file() else "")
    return configs.diff(texts[0], texts[1], f"run {run_a}", f"run {run_b}")


def jobs_of(db: sqlite_utils.Database, run_id: int) -> list[dict]:
    """The evaluation and export jobs started for a training run, newest first, for a table."""
    rows = db.query("select id, kind, status, error, started_at, finished_at from runs "
                    "where parent_run_id = ? and kind != 'train' order by id desc", [run_id])
    return [{"job": r["id"], "kind": r["kind"], "status": r["status"],
             "started": _clock(r["started_at"]),
             "took": format_duration(r["finished_at"] - r["started_at"])
             if r["finished_at"] and r["started_at"] else "—",
             "error": r["error"] or ""} for r in rows]


def _clock(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "—"


def project_active(db: sqlite_utils.Database, project_id: int) -> bool:
    """True while any run or job of the project is queued or running (its tables are live)."""
    return one(db, "select 1 as x from runs where project_id = ? and status in ('queued', 'running') "
                   "limit 1", [project_id]) is not None


def is_active(db: sqlite_utils.Database, run_id: int) -> bool:
    """True while the run or one of its evaluation/export jobs is queued or running."""
    return one(db, "select 1 as x from runs where (id = ? or parent_run_id = ?) and kind != 'train' "
                   "and status in ('queued', 'running') union select 1 from runs where id = ? and "
                   "status in ('queued', 'running')", [run_id, run_id, run_id]) is not None
