"""Starting points: TF2 model-zoo detectors to pre-label with and to fine-tune from. Import a
tarball (upload or server path) or download one, see what each is, pre-label this project
with one (its classes mapped to the project's), or start a run from one."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from backend import auth, dataset_versions, predictions, projects, run_lifecycle, saved_configs, zoo
from pages import common

project = common.require_project()
user = common.user()
can_train = auth.can(user, "train")
db = common.db()
st.title("Starting points")
st.caption("TF2 model-zoo detectors (`<name>.tar.gz` with checkpoint/, saved_model/ and pipeline.config), "
           "checked and stored once. Pre-label with their classes, or fine-tune from their weights.")

# ---------------------------------------------------------------- adding one

if can_train:
    upload_tab, path_tab, download_tab = st.tabs(["Upload a tarball", "A tarball on the server",
                                                  "Download from the TF2 model zoo"])
    with upload_tab, st.form("zoo_upload"):
        upload = st.file_uploader("Zoo tarball (.tar.gz)", type=["gz", "tgz", "tar"], key="zoo_upload_file")
        if st.form_submit_button("Import", type="primary") and upload is not None:
            with common.reported(), st.spinner("Checking the archive, the config, the SavedModel and the checkpoint…"):
                point = zoo.import_tarball(db, user, upload, upload.name)
                st.session_state["zoo_message"] = (("Already stored: " if point["already_imported"] else "Imported ")
                                                   + point["name"])
                st.rerun()
    with path_tab, st.form("zoo_path"):
        path = st.text_input("Path of the .tar.gz (inside the data folder, where a relative path is read from, "
                             "or a folder the server's operator allowed)",
                             key="zoo_server_path")
        if st.form_submit_button("Import", type="primary") and path.strip():
            with common.reported(), st.spinner("Checking the archive, the config, the SavedModel and the checkpoint…"):
                point = zoo.import_tarball(db, user, path.strip())
                st.session_state["zoo_message"] = (("Already stored: " if point["already_imported"] else "Imported ")
                                                   + point["name"])
                st.rerun()
    with download_tab, st.form("zoo_download"):
        name = st.selectbox("Zoo detector", zoo.ZOO_NAMES, key="zoo_download_name")
        st.caption(f"From {zoo.zoo_url()} — resumable: a broken download continues where it stopped.")
        if st.form_submit_button("Download and import", type="primary"):
            bar = st.progress(0.0, text="connecting…")

            def show(done: int, total: int | None) -> None:
                text = f"{done / 1024**2:.1f} MB" + (f" of {total / 1024**2:.1f} MB" if total else "")
                bar.progress(min(done / total, 1.0) if total else 0.0, text=text)

            with common.reported():
                point = zoo.download(db, user, name, progress=show)
                st.session_state["zoo_message"] = f"Downloaded and imported {point['name']}"
                st.rerun()

if message := st.session_state.pop("zoo_message", None):
    st.success(common.plain(message))  # it names the starting point

# ---------------------------------------------------------------- the list

points = zoo.list_starting_points(db)
if not points:
    st.info("No starting points yet." + (" Import or download one above." if can_train else ""))
    st.stop()
st.dataframe(pd.DataFrame(common.shown_rows([{
    "id": p["id"], "name": p["name"], "architecture": p["architecture"],
    "input": f"{p['width']}×{p['height']}", "classes": len(p["classes"]),
    "examples": ", ".join(list(p["classes"].values())[:5]), "size (MB)": p["size_mb"],
    "checkpoint check": p["restore"].get("summary", ""), "file": p["filename"]} for p in points])),
    hide_index=True, width="stretch")
if not can_train:
    st.stop()

chosen_id = st.selectbox("Starting point", [p["id"] for p in points], key="zoo_chosen",
                         format_func=lambda i: next(f"#{p['id']} {p['name']}" for p in points if p["id"] == i))
point = next(p for p in points if p["id"] == chosen_id)
prelabel_tab, finetune_tab, remove_tab = st.tabs(["Pre-label this project", "Fine-tune from it", "Remove"])

with prelabel_tab:
    st.caption("Its classes are mapped to this project's by name (case does not matter); edit the mapping, "
               "leave a class empty to drop its detections. Registering puts the model on the Models page "
               "and starts batch prediction of the project's unlabeled images as draft boxes.")
    mapping = zoo.default_class_mapping(db, project["id"], point["id"])
    names = [label["name"] for label in projects.list_labels(db, project["id"])]
    edited = st.data_editor(
        pd.DataFrame({"model class": list(mapping), "project class": [v or "" for v in mapping.values()]}),
        column_config={"model class": st.column_config.TextColumn(disabled=True),
                       "project class": st.column_config.SelectboxColumn(options=["", *names])},
        hide_index=True, width="stretch", key=f"zoo_mapping_{point['id']}_{project['id']}")
    if st.button("Register and pre-label", type="primary", key="zoo_prelabel"):
        chosen = {row["model class"]: (row["project class"] or None) for row in edited.to_dict("records")}
        with common.reported():
            model = zoo.register_for_prelabel(db, user, project["id"], point["id"], chosen)
            predictions.start(db, user, project["id"], model_id=model["id"])
            st.success(f"Model #{model['id']} registered; batch prediction started (progress on the Models page).")

with finetune_tab:
    versions = dataset_versions.list_versions(db, project["id"], fmt="tfrecord")
    if not versions:
        st.info("Export a TFRecord dataset version first (Datasets page).")
    else:
        with st.form("zoo_finetune"):
            version = st.selectbox("Dataset version", versions, format_func=lambda v: v.title())
            template = st.selectbox("Training settings from the template", list(saved_configs.templates()),
                                    help="Batch size, steps, optimizer and augmentation come from the template; "
                                         "the architecture and input size from the starting point.")
            steps = st.number_input("Training steps (0: the template's)", min_value=0, value=0)
            if st.form_submit_button("Save the config and start the run", type="primary"):
                with common.reported():
                    text = zoo.fine_tune_text(db, saved_configs.templates()[template], point["id"])
                    saved = saved_configs.save_config(db, user, project["id"], f"from {point['name']}", text)
                    run = run_lifecycle.start_run(db, user, project["id"], export_id=version.id, config_id=saved["id"],
                                         num_train_steps=steps or None)
                    st.session_state["show_run"] = run["id"]
                    st.switch_page("pages/runs.py")

with remove_tab:
    if st.button(f"Remove {common.plain(point['name'])}", key="zoo_remove"):
        with common.reported():
            zoo.remove_starting_point(db, user, point["id"])
            st.rerun()
