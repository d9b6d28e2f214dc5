"""Runs: launch training on a dataset version with a saved config, watch it live, cancel,
resume, retrain from it, evaluate its checkpoints, compare runs, export a model."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from backend import auth, dataset_versions, run_artefacts, run_lifecycle, run_processes, run_views, saved_configs, server_settings, zoo
from pages import common

project = common.require_project()
user = common.user()
can_train = auth.can(user, "train")
db = common.db()
run_lifecycle.pump_queue(db)  # settle runs that ended while nobody watched; start queued ones
run_lifecycle.start_queue_watcher()  # and keep doing so in the background while the dashboard runs
st.title(f"Training runs of {common.plain(project['name'])}")

# ---------------------------------------------------------------- launch

if can_train:
    versions = dataset_versions.list_versions(db, project["id"], fmt="tfrecord")
    saved = saved_configs.all_configs(db, project["id"])
    runners = []
    if auth.can(user, "external_runner"):
        with common.reported():
            runners = server_settings.runner_names()
    with st.expander("Launch a training run", expanded=not run_lifecycle.list_runs(db, project["id"])):
        if not versions or not saved:
            st.info("A run needs a TFRecord dataset version (Datasets page) and a saved config "
                    "(Configs page).")
        else:
            with st.form("launch"):
                version = st.selectbox("Dataset version", versions, format_func=lambda v: v.title())
                config = st.selectbox("Config", saved, format_func=saved_configs.config_title)
                steps = st.number_input("Training steps (0: the config's num_steps)", min_value=0, value=0,
                                        key="launch_steps")
                start_choices = zoo.start_from_choices(db, project["id"])
                start = st.selectbox("Start from", range(len(start_choices)), key="launch_start_from",
                                     format_func=lambda i: start_choices[i][2],
                                     help="a starting point brings its architecture and input size too")
                st.caption(f"Runs at once: {run_processes.max_concurrent_runs()} (`BOXWISE_MAX_RUNS`); "
                           "later runs wait in the queue. The config's paths and num_classes are "
                           "filled from the dataset version.")
                runner = None
                if runners:
                    # Only runners the server's owner configured, by name (admins only).
                    runner = st.selectbox("Trainer", [None, *runners], key="launch_runner",
                                          format_func=lambda n: "Boxwise (built in)" if n is None
                                          else f"external runner: {n}")
                if st.form_submit_button("Launch", type="primary"):
                    with common.reported("Run queued"):
                        launched = run_lifecycle.start_run(db, user, project["id"], export_id=version.id,
                                                  config_id=config["id"], num_train_steps=steps or None,
                                                  runner=runner, start_from=start_choices[start][:2])
                        st.session_state["show_run"] = launched["id"]

# ---------------------------------------------------------------- the runs

table = run_views.run_table(db, project["id"])
if not table:
    st.info("No training runs yet.")
    st.stop()
project_active = run_lifecycle.project_active(db, project["id"])


def run_list() -> None:
    """The run table; redrawn every 2 s while a run of the project is active, so its step
    column follows the live view."""
    st.dataframe(pd.DataFrame(common.shown_rows(run_views.run_table(db, project["id"]))), hide_index=True, width="stretch",
                 column_config={"best mAP": st.column_config.NumberColumn(format="%.3f")})


st.fragment(run_every=2 if project_active else None)(run_list)()
run_ids = [row["run"] for row in table]
if "show_run" in st.session_state:  # a run just launched: show it
    st.session_state["run_id"] = st.session_state.pop("show_run")
if st.session_state.get("run_id") not in run_ids:
    st.session_state["run_id"] = run_ids[0]
run_id = st.selectbox("Run", run_ids, key="run_id",
                      format_func=lambda i: run_views.run_title(run_lifecycle.get_run(db, i)))
run = run_lifecycle.get_run(db, run_id)


def live_view(run_id: int, polling: bool) -> None:
    """Progress, curves, log and controls of one run; refreshes itself while the run is active.
    `polling`: whether it was set up to refresh itself (the run or one of its jobs was active)."""
    run_lifecycle.pump_queue(db)
    run = run_lifecycle.get_run(db, run_id)
    summary = run_artefacts.progress_summary(run)
    st.subheader(f"Run #{run_id}: {run['status']}")
    if run["error"]:
        st.error(common.plain(common.shown_in(run["error"])))
    for finding in run_views.doctor_warnings(run):
        st.warning(f"Config doctor at launch: {common.plain(common.shown_in(finding['message']))}")
    st.progress(summary["fraction"], text=f"step {summary['step']} of {summary['total_steps'] or '?'}")
    cols = st.columns(6)
    cols[0].metric("ETA", run_views.format_duration(summary["eta_seconds"]))
    cols[1].metric("steps/s", f"{summary['steps_per_sec']:.2f}" if summary["steps_per_sec"] else "—")
    cols[2].metric("images/s", f"{summary['images_per_sec']:.1f}" if summary["images_per_sec"] else "—")
    cols[3].metric("learning rate", f"{summary['learning_rate']:.5f}" if summary["learning_rate"] is not None else "—")
    cols[4].metric("total loss", f"{summary['losses']['total']:.4f}" if "total" in summary["losses"] else "—")
    cols[5].metric("device", ", ".join(summary["devices"]) or "—")
    curves = pd.DataFrame(run_artefacts.loss_curves(run), columns=["step", "curve", "value"])
    losses = curves[curves["curve"].isin(["total", "classification", "localization"])]
    left, right = st.columns(2)
    left.caption("Loss")
    left.line_chart(losses, x="step", y="value", color="curve", height=260)
    right.caption("Learning rate")
    right.line_chart(curves[curves["curve"] == "learning_rate"], x="step", y="value", height=260)
    reports = run_artefacts.restore_reports(run)
    if reports:
        latest = reports[-1]
        st.info(common.shown_in(f"Started from: {latest['summary']}" if latest.get("summary") else
                f"Started from: {latest.get('kind')} ({latest.get('restored')} of {latest.get('variables')} variables)"))
        with st.expander("What was restored, part by part"):
            st.dataframe(pd.DataFrame(run_artefacts.restore_rows(latest)), hide_index=True, width="stretch")
    with st.expander("Log", expanded=run["status"] == "failed"):
        st.code(common.shown_in("\n".join(run_artefacts.log_tail(run, 40))) or "(empty)", language=None)
    if can_train:
        controls(run)
    if run_lifecycle.is_active(db, run_id) != polling:
        # The run or a job of it ended (or a control started one): rerun the whole page, so the
        # run table and the evaluation section show it and refreshing starts or stops.
        st.rerun()


def controls(run: dict) -> None:
    buttons = st.columns(5)
    if run["status"] in run_lifecycle.ACTIVE and buttons[0].button("Cancel", key=f"cancel_{run['id']}"):
        with common.reported("Cancel requested: the trainer saves a checkpoint and stops"):
            run_lifecycle.cancel_run(db, user, run["id"])
    if run["kind"] == "train" and run["status"] in ("cancelled", "failed") and \
            buttons[1].button("Resume", key=f"resume_{run['id']}"):
        with common.reported("Resumed from the latest checkpoint"):
            run_lifecycle.resume_run(db, user, run["id"])
    has_checkpoint = run_artefacts.latest_checkpoint(run["model_dir"]) is not None
    if has_checkpoint and run["kind"] == "train":
        with buttons[2].popover("Retrain from this run"):
            versions = dataset_versions.list_versions(db, project["id"], fmt="tfrecord")
            saved = saved_configs.all_configs(db, project["id"])
            config_ids = [c["id"] for c in saved]
            version = st.selectbox("Dataset version (newest first)", versions, format_func=lambda v: v.title(),
                                   key=f"retrain_version_{run['id']}")
            config_id = st.selectbox("Config", config_ids, key=f"retrain_config_{run['id']}",
                                     index=config_ids.index(run["config_id"]) if run["config_id"] in config_ids else 0,
                                     format_func=lambda i: saved_configs.config_title(saved_configs.get_config(db, i)))
            if st.button("Retrain", type="primary", key=f"retrain_{run['id']}"):
                with common.reported("Retrain queued"):
                    st.session_state["show_run"] = run_lifecycle.retrain_run(db, user, run["id"], export_id=version.id,
                                                                    config_id=config_id)["id"]
                    st.rerun()
    if has_checkpoint and buttons[3].button("Evaluate checkpoints", key=f"evaluate_{run['id']}"):
        with common.reported("Evaluation queued"):
            run_lifecycle.start_evaluation(db, user, run["id"])
    if has_checkpoint and run["kind"] == "train":
        with buttons[4].popover("Export as a model"):
            choices = ["best", "latest"] if run_artefacts.best_checkpoint(run) else ["latest"]
            which = st.radio("Checkpoint", choices, key=f"export_which_{run['id']}", horizontal=True,
                             format_func={"best": "best mAP", "latest": "latest"}.get)
            name = st.text_input("Model name (optional)", key=f"export_name_{run['id']}")
            if st.button("Export", type="primary", key=f"export_{run['id']}"):
                with common.reported("Export queued: the model appears on the Models page when it is done"):
                    run_lifecycle.export_model(db, user, run["id"], which, name or None)


polling = run_lifecycle.is_active(db, run_id)
st.fragment(run_every=2 if polling else None)(live_view)(run_id, polling)

# ---------------------------------------------------------------- evaluation

st.subheader("Evaluation")
side_jobs = run_views.jobs_of(db, run_id)
if side_jobs:
    st.dataframe(pd.DataFrame(common.shown_rows(side_jobs)), hide_index=True, width="stretch")
metrics = pd.DataFrame(run_views.evaluation_rows(run), columns=["step", "metric", "value"])
if metrics.empty:
    st.caption("No checkpoint of this run has been evaluated yet.")
else:
    st.dataframe(metrics.pivot(index="step", columns="metric", values="value"), width="stretch")
    headline = metrics[metrics["metric"].isin([run_artefacts.MAP, f"{run_artefacts.MAP}@.50IOU", f"{run_artefacts.MAP}@.75IOU"])]
    st.altair_chart(alt.Chart(headline).mark_line(point=True).encode(
        x="step:Q", y=alt.Y("value:Q", title="mAP"), color=alt.Color("metric:N", legend=alt.Legend(orient="bottom",
                                                                                               labelLimit=400)),
        tooltip=["step", "metric", "value"]).properties(height=260), width="stretch")
    per_class = pd.DataFrame(run_views.per_class_rows(run), columns=["class", "AP"])
    if not per_class.empty:
        st.caption("AP per class (newest evaluated checkpoint)")
        st.bar_chart(per_class, x="class", y="AP", height=220)
    curve_step, curves = run_views.pr_curve_rows(run)
    if curves:
        st.caption(f"Precision–recall at IoU 0.5 per class (checkpoint at step {curve_step})")
        st.altair_chart(alt.Chart(pd.DataFrame(curves)).mark_line(interpolate="step-after").encode(
            x=alt.X("recall:Q", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("precision:Q", scale=alt.Scale(domain=[0, 1])), color="class:N",
            tooltip=["class", "recall", "precision"]).properties(height=260), width="stretch")

# ---------------------------------------------------------------- comparison

st.subheader("Compare runs")
chosen = st.multiselect("Runs", run_ids, default=run_ids[:2], key="compare")


def comparison(chosen: list[int]) -> None:
    """The comparison table; live like the run table."""
    st.dataframe(pd.DataFrame(common.shown_rows(run_views.compare_runs(db, chosen))), hide_index=True, width="stretch",
                 column_config={"best mAP": st.column_config.NumberColumn(format="%.3f")})


if chosen:
    st.fragment(run_every=2 if project_active else None)(comparison)(chosen)
if len(chosen) == 2:
    st.caption(f"Config difference (run {chosen[0]} → run {chosen[1]})")
    st.code(common.shown_in(run_views.config_diff(db, chosen[0], chosen[1])) or "(identical)", language="diff")
