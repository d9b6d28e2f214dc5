"""Upload: add images (files or .zip) to the chosen project and see what was rejected and why."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from backend import images
from pages import common, upload_import

project = common.require_project()
st.title(f"Upload to {common.plain(project['name'])}")
images_tab, import_tab = st.tabs(["Images", "Import annotations"])

with images_tab:
    st.write("JPEG, PNG, BMP, WebP, TIFF or GIF files, or .zip archives of them. Every image is "
             "decoded to check it; EXIF rotation is applied once; duplicates are skipped.")
    with st.form("upload"):
        files = st.file_uploader("Images or .zip", accept_multiple_files=True,
                                 type=sorted(e.lstrip(".") for e in images.IMAGE_EXTENSIONS) + ["zip"])
        submitted = st.form_submit_button("Add to project", type="primary")
    if submitted and files:
        bar = st.progress(0.0, text="Checking images…")
        total = len(files)

        def progress(done: int, _total, name: str) -> None:
            bar.progress(min(1.0, done / max(total, done)), text=f"{done} checked: {common.plain(name)}")

        with common.reported():
            report = images.ingest(common.db(), common.user(), project["id"],
                                   images.iter_uploads((f.name, f.getvalue()) for f in files),
                                   on_progress=progress)
            bar.progress(1.0, text="Done")
            st.session_state["upload_report"] = report.rows()
    rows = st.session_state.get("upload_report")
    if rows:
        table = pd.DataFrame(rows)
        counts = table["outcome"].value_counts()
        st.success(f"{counts.get('accepted', 0)} accepted, {counts.get('duplicate', 0)} duplicates "
                   f"skipped, {counts.get('rejected', 0) + counts.get('skipped', 0)} rejected")
        rejected = table[table["outcome"].isin(["rejected", "skipped"])]
        if not rejected.empty:
            st.error("Rejected files")
            st.dataframe(rejected[["file", "message"]], hide_index=True, width="stretch")
        with st.expander("Every file", expanded=rejected.empty):
            st.dataframe(table, hide_index=True, width="stretch")

with import_tab:
    upload_import.render(project)
