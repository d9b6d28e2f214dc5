"""Models: the project's registered detectors, registering new ones, choosing the current one,
and batch prediction (drafts for labelers) with live progress."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from backend import auth, model_registry, predictions, tflite
from pages import common

project = common.require_project()
user = common.user()
can_train = auth.can(user, "train")
st.title(f"Models of {common.plain(project['name'])}")

# ---------------------------------------------------------------- the registry

registry = model_registry.list_models(common.db(), project["id"])
if not registry:
    st.info("No models yet. Register an export below: from a training run, a folder on the server, "
            "or a zip of an export (TF OD API or Boxwise SavedModels).")
else:
    table = pd.DataFrame(common.shown_rows([{
        "current": "★" if m["is_current"] else "", "id": m["id"], "name": m["name"],
        "from": m["source"], "run": m["run_id"], "dataset version": m["export_id"],
        "size (MB)": m["size_mb"],
        "metrics": ", ".join(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}"
                             for k, v in list(m["metrics"].items())[:4]),
        "warnings": "; ".join(m["warnings"]) + ("" if m["available"] else " files missing on disk"),
        "path": m["path"]} for m in registry]))
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"run": st.column_config.NumberColumn(format="%d"),
                                "dataset version": st.column_config.NumberColumn(format="%d")})
    if can_train:
        ids = [m["id"] for m in registry]
        current = next((m["id"] for m in registry if m["is_current"]), ids[0])
        with st.form("current_model"):
            chosen = st.selectbox("Current model (used for batch prediction)", ids, index=ids.index(current),
                                  key="current_model_choice",
                                  format_func=lambda i: next(f"#{m['id']} {m['name']}" for m in registry
                                                             if m["id"] == i))
            if st.form_submit_button("Mark as current"):
                with common.reported(success="Current model changed"):
                    model_registry.set_current(common.db(), user, project["id"], chosen)
                    st.rerun()

# ---------------------------------------------------------------- registering

if can_train:
    st.subheader("Register a model")
    run_tab, folder_tab, zip_tab = st.tabs(["From a training run", "From a folder on the server", "Upload a zip"])
    with run_tab:
        runs = model_registry.runs_with_exports(common.db(), project["id"])
        if not runs:
            st.caption("No run of this project has an export yet (Runs page, or "
                       "`python -m backend export-model`).")
        else:
            with st.form("register_run"):
                choice = st.selectbox("Export", range(len(runs)), format_func=lambda i: runs[i]["name"]
                                      + (" (registered)" if runs[i]["registered"] else ""))
                name = st.text_input("Name (optional)", key="run_model_name")
                if st.form_submit_button("Register", type="primary"):
                    with common.reported(success="Model registered"):
                        model_registry.register_run(common.db(), user, runs[choice]["run_id"],
                                            runs[choice]["export_dir"], name=name or None)
                        st.rerun()
    with folder_tab:
        with st.form("register_folder"):
            path = st.text_input("Export folder (holding saved_model/) or SavedModel folder",
                                 placeholder="models/ssd_mobilenet_v2_fpnlite_320x320/", key="folder_model_path",
                                 help="A relative path is read from the data folder")
            name = st.text_input("Name (optional)", key="folder_model_name")
            if st.form_submit_button("Register", type="primary") and path.strip():
                with common.reported(success="Model registered"):
                    model_registry.register_directory(common.db(), user, project["id"], path.strip(), name=name or None)
                    st.rerun()
    with zip_tab:
        with st.form("register_zip"):
            upload = st.file_uploader("Zip of an export folder (saved_model/, label_map.pbtxt …)", type=["zip"])
            name = st.text_input("Name (optional)", key="zip_model_name")
            if st.form_submit_button("Upload and register", type="primary") and upload is not None:
                with st.spinner("Extracting and checking the model…"), \
                        common.reported(success="Model registered"):
                    model_registry.register_zip(common.db(), user, project["id"], upload, upload.name,
                                        name=name or None)
                    st.rerun()

# ---------------------------------------------------------------- TFLite for devices

st.subheader("Deploy to devices (TFLite)")
exportable = tflite.exportable_models(common.db(), project["id"])
if not exportable:
    st.caption("No registered model has a checkpoint yet: register an export of a training run "
               "(it keeps `checkpoint/` and `pipeline.config` beside the SavedModel).")
else:
    tflite_ids = [m["id"] for m in exportable]
    tflite_model = st.selectbox("Model to convert", tflite_ids, key="tflite_model",
                                format_func=lambda i: next(f"#{m['id']} {m['name']}" for m in exportable
                                                           if m["id"] == i))
    if can_train:
        with st.form("tflite_export"):
            quantize = st.radio("Quantization", tflite.QUANTIZE, horizontal=True, key="tflite_quantize",
                                help="int8: 3× smaller than float32 and 3.5× faster on one CPU thread "
                                     "(BENCHMARKS.md), calibrated on the model's dataset version; "
                                     "float16: half the size")
            max_detections = st.number_input("Detections per image", 1, 100, 10, key="tflite_max_detections")
            if st.form_submit_button("Export to TFLite"):
                with st.spinner("Converting to TFLite (about a minute)…"), \
                        common.reported(success="TFLite model written"):
                    tflite.export_registered(common.db(), user, tflite_model, quantize, int(max_detections))
    for found in tflite.list_exports(tflite_model):
        name, data = tflite.download(common.db(), user, tflite_model, found["quantize"])
        st.download_button(f"Download {found['quantize']} TFLite ({found['size_bytes'] / 1024**2:.2f} MB .tflite, "
                           "with labels.txt and model.json)", data, file_name=name, mime="application/zip",
                           key=f"tflite_download_{found['quantize']}")

# ---------------------------------------------------------------- batch prediction

st.subheader("Drafts for labelers")
st.write("Runs the current model over this project's unlabeled images (new or in progress, no human "
         "box) and stores its detections as draft boxes that labelers accept, adjust or delete. "
         "Each image also gets an uncertainty score for the “most uncertain first” queue.")


@st.fragment(run_every=2)
def batch_progress() -> None:
    progress = predictions.read_progress(project["id"])
    running = bool(progress) and progress["state"] in predictions.ACTIVE_STATES
    if progress:
        text = (f"{progress['state']}: {progress['done']}/{progress['total']} images · "
                f"{progress['drafts']} drafts · {progress['skipped']} skipped · {progress['failed']} failed")
        st.progress(progress["fraction"], text=text)
        for warning in progress.get("warnings") or []:
            st.warning(common.shown_in(warning))
        if progress["state"] == "failed":
            st.error(common.shown_in(progress.get("message") or "failed"))
        elif progress["state"] == "done":
            st.success(progress.get("message") or "done")
        if progress.get("errors"):
            with st.expander(f"{len(progress['errors'])} images could not be predicted"):
                st.dataframe(pd.DataFrame(common.shown_rows(progress["errors"])), hide_index=True, width="stretch")
    if not can_train:
        return
    if running:
        if st.button("Cancel batch prediction"):
            with common.reported(success="Stopping after the current image"):
                predictions.cancel(user, project["id"])
        return
    with st.form("batch_prediction"):
        min_score = st.slider("Keep detections scoring at least", 0.05, 0.95,
                              predictions.DEFAULT_MIN_SCORE, 0.05, key="batch_min_score")
        if st.form_submit_button("Predict unlabeled images", type="primary",
                                 disabled=not any(m["is_current"] for m in registry)):
            with common.reported(success="Batch prediction started"):
                predictions.start(common.db(), user, project["id"], min_score=min_score)
                st.rerun()


batch_progress()
