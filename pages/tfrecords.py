"""TFRecord browser: open any TF OD API record set, page through examples with boxes drawn,
see each example's features, validate the set, and extract its images."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from backend import auth, dataset_versions, record_browser
from pages import common

PAGE_SIZE = 6
user = common.user()
st.title("TFRecord browser")

project = common.project()
versions = dataset_versions.list_versions(common.db(), project["id"], fmt="tfrecord") if project else []
sources = (["Upload files"] if auth.can(user, "ingest") else []) + \
    (["A dataset version"] if versions else []) + \
    (["A path or glob on the server"] if auth.can(user, "export") else [])
if not sources:
    st.info("No dataset version to browse yet.")
    st.stop()
source = st.radio("Records from", sources, horizontal=True)
pattern = None
if source == "Upload files":
    uploads = st.file_uploader("TFRecord files (plain or GZIP) and optionally a label_map.pbtxt",
                               accept_multiple_files=True)
    if uploads and st.button("Open uploaded files", type="primary"):
        with common.reported():
            st.session_state["tfrecord_upload"] = record_browser.save_uploads(
                user, [(f.name, f.getvalue()) for f in uploads])
    pattern = st.session_state.get("tfrecord_upload")
elif source == "A dataset version":
    version = st.selectbox("Version", versions, format_func=lambda v: f"v{v.number}")
    split = st.selectbox("Split", sorted(version.shard_globs))
    pattern = version.shard_globs.get(split)
else:
    pattern = st.text_input("File, glob, folder or URL", placeholder="exports/project-1/…/train.record-?????-of-00010",
                            help="A relative path is read from the data folder. Several separated by "
                                 "commas; `name@N` for N shards; gs:// URLs are read through TensorFlow") or None
label_map_path = st.text_input("Label map (optional; a label_map.pbtxt beside the records is used "
                               "when empty)") if auth.can(user, "export") else None

if not pattern:
    st.stop()

with common.reported():
    bar = st.progress(0.0, text="Reading records…")
    inspection = record_browser.inspect(user, pattern, label_map_path or None,
                                   on_progress=lambda done, _t, name: bar.progress(
                                       (done % 100) / 100, text=f"{done} examples read ({common.plain(common.shown(name))})"))
    bar.empty()
    summary, problems_tab, examples_tab, *extract_tab = st.tabs(
        ["Summary", f"Problems ({len(inspection.problems)})", "Examples"] +
        (["Extract images"] if auth.can(user, "export") else []))
    with summary:
        cols = st.columns(4)
        cols[0].metric("Examples", inspection.examples)
        cols[1].metric("Boxes", inspection.boxes)
        cols[2].metric("Without boxes", inspection.negatives)
        cols[3].metric("Problems", len(inspection.problems))
        st.dataframe(pd.DataFrame([{"file": common.shown(f), "examples": n, "GZIP": inspection.compressed[f]}
                                   for f, n in inspection.files.items()]), hide_index=True, width="stretch")
        if inspection.classes:
            st.bar_chart(pd.Series(inspection.classes, name="boxes"), horizontal=True)
        st.caption(f"Label map: {common.plain(common.shown(inspection.label_map)) or 'none (ids are not checked)'}")
    with problems_tab:
        if inspection.problems:
            st.dataframe(pd.DataFrame(common.shown_rows(inspection.to_json()["problems"])), hide_index=True,
                         width="stretch")
        else:
            st.success("No problems found.")
    with examples_tab:
        last_page = max(0, (inspection.examples - 1) // PAGE_SIZE)
        number = st.number_input("Page", 1, last_page + 1, 1) - 1
        entries = record_browser.page(user, pattern, number * PAGE_SIZE, PAGE_SIZE, label_map_path or None)
        columns = st.columns(3)
        for position, entry in enumerate(entries):
            with columns[position % 3]:
                st.markdown(f"**{common.plain(entry['where'])}**")
                if entry["image"] is not None:
                    st.image(entry["image"], width="stretch")
                if entry["error"]:
                    st.error(common.shown_in(entry["error"]))
                with st.expander("Features"):
                    st.dataframe(pd.DataFrame(entry["features"]), hide_index=True, width="stretch")
                    if entry["boxes"]:
                        st.dataframe(pd.DataFrame(entry["boxes"]), hide_index=True, width="stretch")
    if extract_tab:  # only for roles that may extract
        with extract_tab[0]:
            draw = st.checkbox("Draw boxes and class names")
            if st.button("Extract to zip"):
                bar = st.progress(0.0, text="Extracting…")
                path, result = record_browser.extract_zip(
                    user, pattern, draw, label_map_path or None,
                    on_progress=lambda done, _t, name: bar.progress(
                        min(1.0, done / max(inspection.examples, 1)), text=common.plain(name)))
                st.session_state["tfrecord_zip"] = record_browser.zip_download(user, path)
                for problem in result.problems:
                    st.warning(common.plain(common.shown_in(str(problem))))
            prepared = st.session_state.get("tfrecord_zip")
            if prepared:
                st.download_button("Download images", prepared[1], file_name=prepared[0],
                                   mime="application/zip", type="primary")
