"""The "Import annotations" tab of the Upload page: VOC, COCO, CSV, YOLO or TFRecord files
(or a .zip of the dataset folder) into the chosen project, with a report of every item."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from backend import auth, importers
from pages import common

FORMAT_NAMES = {"voc": "Pascal VOC XML (LabelImg)", "coco": "COCO JSON", "csv": "CSV",
                "yolo": "YOLO txt (with classes.txt or data.yaml)", "tfrecord": "TFRecord (TF OD API)"}


def render(project: dict) -> None:
    st.write("Upload a .zip of the dataset folder (annotations and images), or the annotation "
             "files alone when the images are already in the project. Nothing changes unless "
             "every image and box can be imported.")
    user = common.user()
    with st.form("import_annotations"):
        fmt = st.selectbox("Format", importers.FORMATS, format_func=FORMAT_NAMES.get)
        files = st.file_uploader("Files or .zip", accept_multiple_files=True)
        create = st.checkbox("Create classes the project does not have",
                             disabled=not auth.can(user, "manage_projects"))
        submitted = st.form_submit_button("Import", type="primary")
    if submitted and files:
        bar = st.progress(0.0, text="Reading…")

        def progress(done: int, total: int | None, name: str) -> None:
            bar.progress(min(1.0, done / max(total or done, 1)), text=f"{done} read: {common.plain(name)}")

        with common.reported():
            report = importers.import_upload(common.db(), user, project["id"],
                                             [(f.name, f.getvalue()) for f in files], fmt,
                                             create_classes=create, on_progress=progress,
                                             create_hint="tick “Create classes the project does "
                                                         "not have” (admins)")
            bar.progress(1.0, text="Done")
            st.session_state["import_report"] = report
    report = st.session_state.get("import_report")
    if report is None:
        return
    # (plain text: they quote file and class names from the uploaded files)
    (st.success if report.ok else st.error)(common.plain(common.shown_in(report.summary())))
    for problem in report.problems:
        st.error(common.plain(common.shown_in(str(problem))))
    for note in report.notes:
        st.info(common.plain(common.shown_in(str(note))))
    if report.items:
        st.dataframe(pd.DataFrame(common.shown_rows(report.rows())), hide_index=True, width="stretch")


if __name__ == "__main__":  # opened by URL in Streamlit's legacy pages mode, not as the Upload tab
    common.leave_legacy_pages_mode()
