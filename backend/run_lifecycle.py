"""Training and evaluation runs as background processes: start, watch, cancel, resume, re-attach.

A run is a row of `runs` plus its folder `data/runs/<id>/` (the TF OD API `model_dir`). The
trainer runs as its own process group (`start_new_session`), logging to `train.log` in that
folder; the row keeps its pid and the kernel's start time of that pid, so a pid the system
recycled for another program is never mistaken for the run.

Nobody waits on a process. `pump_queue(db)` — called by the Runs page's refresh and at start-up —
settles runs whose process ended (from the trainer's `status.json`, or as failed with the
reason), escalates overdue cancels to SIGKILL, and starts queued runs in order while fewer
than `run_processes.max_concurrent_runs()` are running.

States: queued → running → succeeded | failed | cancelled; a cancelled or failed training run
can be resumed (queued again, same folder: the trainer continues from its latest checkpoint).
Kinds: `train`, `eval` (the trainer's evaluation mode over a training run's checkpoints) and
`export` (the exporter, whose success registers a model).

The processes themselves are `run_processes`, what a run's folder holds `run_artefacts`, and
the Runs page's tables `run_views`.
"""
from __future__ import annotations

import json
import logging
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import sqlite_utils

from backend import config_check, config_doctor, config_document, dataset_versions, run_artefacts, run_processes, saved_configs, server_settings, settings
from backend.auth import require
from backend.db import now, one, transaction
from backend.errors import BoxwiseError, Invalid, NotFound
from backend.training import progress
log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")
KINDS = ("train", "eval", "export")
EVAL_TIMEOUT = 300


# ---------------------------------------------------------------- rows


def get_run(db: sqlite_utils.Database, run_id: int) -> dict:
    row = one(db, "select r.*, u.username as created_by_name from runs r "
                  "left join users u on u.id = r.created_by where r.id = ?", [run_id])
    if row is None:
        raise NotFound(f"no run {run_id}")
    return row


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
            (folder / run_artefacts.CONFIG_FILE).write_text(text, encoding="utf-8")
        _update(db, run_id, model_dir=str(model_dir or folder), log_path=str(folder / run_artefacts.LOG_FILE))
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
    passes an interpreter or a script. A relative path in the saved config is read from the data
    folder (also when the command line starts the run), and the run's `pipeline.config` names
    every file by its absolute path (`config_check.absolute_paths`). The run starts at once when a slot is free, else waits its turn in the
    queue.
    """
    require(actor, "train")
    if runner:
        require(actor, "external_runner")
        server_settings.runner(runner)  # refuses an unknown name before anything is written
    config = saved_configs.get_config(db, config_id)
    version = dataset_versions.get_version(db, export_id)
    if config["project_id"] != project_id or version.project_id != project_id:
        raise Invalid("the config and the dataset version must belong to the run's project")
    external = bool(runner)
    text = saved_configs.fill_from_dataset_version(config["text"], version)
    if fine_tune_checkpoint:
        text = saved_configs.set_fine_tune_checkpoint(text, fine_tune_checkpoint)
    if start_from is not None and start_from[0] != "config":
        from backend import zoo
        text = zoo.start_from(db, text, *start_from)
    # A saved config's relative paths are read from the data folder, whoever starts the run.
    data = settings.data_dir()
    problems = config_check.check(text, version, actor=actor, external=external, base=data)
    if problems:
        raise Invalid("the config cannot train on dataset version "
                      f"{version.id}:\n" + "\n".join(f"- {p}" for p in problems))
    report = config_doctor.examine(text, version, num_steps=num_train_steps)
    if report.errors:
        raise Invalid(f"the config doctor refuses the run on dataset version {version.id}:\n"
                      + "\n".join(f"- {f.message}" for f in report.errors))
    # The relative paths, checked as the config gives them, made absolute: the trainer's working
    # folder is the repository's.
    text = config_check.absolute_paths(text, actor, base=data)
    # The run records where it starts from as its config says, whoever wrote it there.
    fine_tune_checkpoint = _config_value(text, "train_config.fine_tune_checkpoint") or None
    run = _insert_run(db, actor, project_id, kind="train", text=text, export_id=export_id,
                      config_id=config_id, parent_run_id=parent_run_id,
                      fine_tune_checkpoint=fine_tune_checkpoint, num_train_steps=num_train_steps,
                      runner=runner or None)
    _update(db, run["id"], doctor_warnings=json.dumps(report.to_json(), ensure_ascii=False))
    pump_queue(db)
    return get_run(db, run["id"])


def _config_value(text: str, path: str):
    try:
        return config_document.ConfigDocument(text).get(path)
    except Exception:  # noqa: BLE001 - absent
        return None


def retrain_run(db: sqlite_utils.Database, actor: dict, run_id: int, *,
                export_id: int | None = None, config_id: int | None = None,
                num_train_steps: int | None = None) -> dict:
    """A new run on the newest dataset version (or `export_id`) starting from run `run_id`'s
    latest checkpoint as a detection fine-tune, with the same config unless told otherwise."""
    require(actor, "train")
    source = get_run(db, run_id)
    checkpoint = run_artefacts.latest_checkpoint(source["model_dir"])
    if checkpoint is None:
        raise Invalid(f"run {run_id} has no checkpoint yet to retrain from")
    if export_id is None:
        export_id = dataset_versions.latest_version(db, source["project_id"]).id
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
    if run_artefacts.latest_checkpoint(source["model_dir"]) is None:
        raise Invalid(f"run {run_id} has no checkpoint to evaluate yet")
    doc = config_document.ConfigDocument.load(Path(source["model_dir"], run_artefacts.CONFIG_FILE))
    doc.set("eval_config.include_metrics_per_category", True)  # the Runs page shows AP per class
    run = _insert_run(db, actor, source["project_id"], kind="eval", text=doc.text,
                      export_id=source["export_id"], config_id=source["config_id"],
                      parent_run_id=run_id, model_dir=Path(source["model_dir"]) / run_artefacts.EVALUATION_DIR)
    pump_queue(db)
    return get_run(db, run["id"])


def export_model(db: sqlite_utils.Database, actor: dict, run_id: int, which: str = "latest",
                 name: str | None = None) -> dict:
    """Queue the exporter on run `run_id`'s `latest` or `best` (highest mAP) checkpoint; when it
    succeeds the SavedModel is registered as a model of the project."""
    require(actor, "train")
    source = get_run(db, run_id)
    if which == "best":
        best = run_artefacts.best_checkpoint(source)
        if best is None:
            raise Invalid(f"run {run_id} has no evaluated checkpoint: evaluate it first, or export the latest")
        checkpoint = best["checkpoint"]
    elif which == "latest":
        checkpoint = run_artefacts.latest_checkpoint(source["model_dir"])
    else:
        raise Invalid(f"export which checkpoint? 'latest' or 'best', not {which!r}")
    if checkpoint is None:
        raise Invalid(f"run {run_id} has no checkpoint to export yet")
    text = Path(source["model_dir"], run_artefacts.CONFIG_FILE).read_text(encoding="utf-8")
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
    config = str(folder / run_artefacts.CONFIG_FILE)
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
    env = run_processes.child_environment()
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
    run_processes._children[child.pid] = child
    run_processes.lower_priority(child.pid)  # already gone: settled as failed with its log
    _update(db, run["id"], status="running", pid=child.pid,
            pid_start_time=run_processes.process_start_time(child.pid), command=json.dumps(command),
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
                    run_processes.reap_children()
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
        free = run_processes.max_concurrent_runs() - running
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
        if run_processes.process_alive(run["pid"], run["pid_start_time"]):
            asked = run["cancel_requested_at"]
            if asked and time.time() - asked > run_processes.cancel_grace_seconds():
                run_processes._signal_group(run["pid"], signal.SIGKILL)
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
    returncode = run_processes._reap(run["pid"]) if run["pid"] else None
    run_processes._children.pop(run["pid"], None)
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
        last = run_artefacts.log_tail(run, 1)
        values.update(status="failed",
                      error=f"the process (pid {run['pid']}) ended without writing its status: "
                            f"{how}" + (f"; last log line: {last[-1]}" if last else ""))
    return values


def _evaluated_latest(run: dict) -> bool:
    """Whether an evaluation job that ended unwatched (no exit code to read) got through: the
    metrics file of its training run covers that run's newest checkpoint."""
    training_dir = Path(run["model_dir"]).parent
    latest = run_artefacts.latest_checkpoint(training_dir)
    done = {Path(entry["checkpoint"]).name for entry in run_artefacts.evaluations({"model_dir": str(training_dir)})}
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
        if run_processes.process_alive(run["pid"], run["pid_start_time"]):
            run_processes._signal_group(run["pid"], signal.SIGTERM)
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


def _register_export(db: sqlite_utils.Database, run: dict) -> None:
    """A succeeded export becomes a model of the project (the models registry checks the
    SavedModel first); a refused one turns the export job into a failure saying why."""
    if run["status"] != "succeeded":
        return
    from backend import auth, model_registry  # the registry reads SavedModel protos: TensorFlow, lazily
    folder = Path(run["log_path"]).parent
    actor = auth.get_user(db, run["created_by"]) if run["created_by"] else auth.CLI_ACTOR
    try:
        model_registry.register_run(db, actor, run["parent_run_id"], folder / "exported",
                            name=(folder / "model_name.txt").read_text(encoding="utf-8"))
    except (BoxwiseError, PermissionError) as exc:
        _update(db, run["id"], status="failed", error=f"the export could not be registered: {exc}")


def project_active(db: sqlite_utils.Database, project_id: int) -> bool:
    """True while any run or job of the project is queued or running (its tables are live)."""
    return one(db, "select 1 as x from runs where project_id = ? and status in ('queued', 'running') "
                   "limit 1", [project_id]) is not None


def is_active(db: sqlite_utils.Database, run_id: int) -> bool:
    """True while the run or one of its evaluation/export jobs is queued or running."""
    return one(db, "select 1 as x from runs where (id = ? or parent_run_id = ?) and kind != 'train' "
                   "and status in ('queued', 'running') union select 1 from runs where id = ? and "
                   "status in ('queued', 'running')", [run_id, run_id, run_id]) is not None
