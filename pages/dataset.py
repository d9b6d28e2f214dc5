"""Datasets: export a dataset version (TFRecord, VOC, COCO, CSV, YOLO), list versions with
their counts and class balance, and download them as zips."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from backend import auth, dataset_versions, images
from pages import common

project = common.require_project()
user = common.user()
st.title(f"Datasets of {common.plain(project['name'])}")

stats = images.stats(common.db(), project["id"])
st.caption(f"{stats['images']} images · " +
           " · ".join(f"{n} {status}" for status, n in stats["by_status"].items()))

if auth.can(user, "export"):
    with st.expander("New dataset version", expanded=not dataset_versions.list_versions(common.db(), project["id"])):
        with st.form("export"):
            fmt = st.selectbox("Format", dataset_versions.FORMATS,
                               format_func=lambda f: {"tfrecord": "TFRecord (TF OD API)", "voc": "Pascal VOC",
                                                      "coco": "COCO JSON", "csv": "CSV",
                                                      "yolo": "YOLO"}[f])
            left, middle, right = st.columns(3)
            train = left.number_input("Train share", 0.0, 1.0, 0.8, 0.05)
            val = middle.number_input("Validation share", 0.0, 1.0, 0.2, 0.05)
            test = right.number_input("Test share", 0.0, 1.0, 0.0, 0.05)
            left, middle, right = st.columns(3)
            seed = left.number_input("Seed", 0, 2**31 - 1, 0, help="Fixes where new images go")
            shards = middle.number_input("Shards per split (TFRecord)", 1, dataset_versions.MAX_SHARDS, 1)
            statuses = right.multiselect("Image statuses", sorted(set(stats["by_status"]) | set(dataset_versions.DEFAULT_STATUSES)),
                                         default=list(dataset_versions.DEFAULT_STATUSES))
            reshuffle = st.checkbox("Reshuffle: give every image a new split "
                                    "(otherwise images keep the split they had)")
            submitted = st.form_submit_button("Export", type="primary")
        if submitted:
            bar = st.progress(0.0, text="Writing…")

            def progress(done: int, total: int, name: str) -> None:
                bar.progress(min(1.0, done / max(total, 1)), text=f"{done}/{total} {name}")

            with common.reported():
                version = dataset_versions.create_export(
                    common.db(), user, project["id"], fmt,
                    splits={"train": train, "val": val, "test": test}, seed=int(seed),
                    shards=int(shards), statuses=statuses, reshuffle=reshuffle, on_progress=progress)
                bar.progress(1.0, text="Done")
                st.success(f"Dataset version {version.number} written: "
                           f"{version.counts['total_images']} images, {version.counts['total_boxes']} boxes")

versions = dataset_versions.list_versions(common.db(), project["id"])
if not versions:
    st.info("No dataset versions yet.")
    st.stop()

st.subheader("Dataset versions")
st.dataframe(pd.DataFrame([{
    "version": v.number, "format": v.format,
    "created": pd.to_datetime(v.created_at, unit="s"),
    **{f"{split} images": n for split, n in v.counts.get("images", {}).items()},
    "boxes": v.counts.get("total_boxes"), "classes": v.num_classes, "seed": v.params.get("seed"),
    "on disk": v.exists} for v in versions]), hide_index=True, width="stretch")

chosen = st.selectbox("Show version", versions, format_func=lambda v: f"v{v.number} ({v.format})")
balance = chosen.class_balance()
if balance:
    st.altair_chart(alt.Chart(pd.DataFrame(balance)).mark_bar().encode(
        x=alt.X("boxes:Q", title="boxes"), y=alt.Y("class:N", title=None),
        color=alt.Color("split:N"), tooltip=["split", "class", "boxes"]).properties(
        title=f"Class balance of v{chosen.number}"), width="stretch")
left, right = st.columns(2)
with left:
    st.write("**Files**")
    st.code(common.shown_in(f"{chosen.path}\nlabel map: {chosen.label_map_path}\n" +
                            "\n".join(f"{split}: {glob}" for split, glob in chosen.shard_globs.items())),
            language=None)
    if user["role"] != "admin":
        st.caption("Paths are relative to the data folder.")
    snippet = chosen.snippet_text()
    if snippet:
        with st.expander("pipeline.config input readers"):
            st.code(common.shown_in(snippet), language="protobuf")
with right:
    if auth.can(user, "export") and st.button("Prepare zip for download", key=f"zip-{chosen.id}"):
        with common.reported():
            st.session_state["dataset_zip"] = (chosen.id, *dataset_versions.zip_download(common.db(), user,
                                                                                 chosen.id))
    prepared = st.session_state.get("dataset_zip")
    if prepared and prepared[0] == chosen.id:
        st.download_button("Download zip", prepared[2], file_name=prepared[1],
                           mime="application/zip", type="primary")
