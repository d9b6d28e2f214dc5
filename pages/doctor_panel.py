"""The Configs page's Doctor panel: the config doctor's findings for the edited config on the
chosen dataset version, its charts, and a "Fix it" button per finding that has a config fix."""
from __future__ import annotations

import hashlib
import math

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from backend import config_doctor
from backend.dataset_versions import DatasetVersion
from pages import common


def _apply(fix: dict, change: str) -> None:
    with common.reported(f"Applied: {change}. Review the change below, then save a new version."):
        st.session_state["config_text"] = config_doctor.apply_fix(st.session_state["config_text"], fix)


def _iou_chart(report: config_doctor.Report) -> alt.FacetChart:
    """Boxes per 0.05 of best anchor IoU, one histogram per class (counted here, so the browser
    gets a few rows per class however many boxes there are)."""
    frame = pd.DataFrame(report.boxes)
    frame["bin"] = np.minimum(np.floor(frame["best_iou"] * 20), 19) / 20
    bins = frame.groupby(["class", "bin"]).size().reset_index(name="boxes")
    bins["end"] = bins["bin"] + 0.05
    bars = alt.Chart().mark_rect().encode(
        x=alt.X("bin:Q", scale=alt.Scale(domain=[0, 1]), title="best anchor IoU"), x2="end:Q",
        y=alt.Y("boxes:Q", title="boxes"), y2=alt.datum(0), color=alt.Color("class:N", legend=None),
        tooltip=["class", "bin", "boxes"])
    rule = alt.Chart().mark_rule(color="red", strokeDash=[4, 3]).encode(x=alt.datum(report.matched_threshold))
    return alt.layer(bars, rule, data=bins).properties(width=180, height=140).facet(
        column=alt.Column("class:N", title=None))


def _size_chart(report: config_doctor.Report) -> alt.LayerChart:
    """Object sizes in quarter-octave bins on a log2 axis, the anchors' sizes as rules on it."""
    boxes = pd.DataFrame(report.boxes)
    boxes["bin"] = np.floor(np.log2(boxes["size"].clip(lower=1.0)) * 4) / 4
    bins = boxes.groupby(["bin", "class"]).size().reset_index(name="boxes")
    bins["end"] = bins["bin"] + 0.25
    bins["top"] = bins.groupby("bin")["boxes"].cumsum()  # classes stacked within a bin
    bins["bottom"] = bins["top"] - bins["boxes"]
    anchors = pd.DataFrame(report.anchors).drop_duplicates(subset=["level", "octave"])
    anchors["log2_size"] = np.log2(anchors["size"])
    anchors["anchor"] = [f"level {r.level}, octave {r.octave}: {r.size:.1f} px" for r in anchors.itertuples()]
    low = math.floor(min(bins["bin"].min(), anchors["log2_size"].min()))
    high = math.ceil(max(bins["end"].max(), anchors["log2_size"].max()))
    x = alt.Scale(domain=[low, high])
    axis = alt.Axis(title="size at the model input (√area, px)", values=list(range(low, high + 1)),
                    labelExpr="format(pow(2, datum.value), '.0f')")
    bars = alt.Chart(bins).mark_rect(opacity=0.8).encode(
        x=alt.X("bin:Q", scale=x, axis=axis), x2="end:Q", y=alt.Y("top:Q", title="boxes"), y2="bottom:Q",
        color=alt.Color("class:N"), tooltip=["class", "boxes"])
    rules = alt.Chart(anchors).mark_rule(color="black", strokeDash=[2, 2]).encode(
        x=alt.X("log2_size:Q", scale=x), tooltip=["anchor"])
    return alt.layer(bars, rules).properties(height=200)


@st.cache_data(max_entries=16, show_spinner="The doctor is checking the boxes…")
def _examine(text: str, version: DatasetVersion) -> config_doctor.Report:
    # A dataset version never changes once exported, so (text, version) decides the report;
    # the page reruns on every widget change and a large version takes seconds (BENCHMARKS.md).
    return config_doctor.examine(text, version)


def show(text: str, version: DatasetVersion) -> None:
    """The panel for config `text` on dataset `version` (the editor's text is in
    `st.session_state["config_text"]`, which "Fix it" edits)."""
    st.subheader("Doctor")
    with common.reported():
        report = _examine(text, version)
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        errors, warnings = len(report.errors), len(report.warnings)
        st.caption(f"{len(report.boxes)} boxes of dataset version {version.number} against this config: "
                   f"{errors} error{'' if errors == 1 else 's'}, {warnings} warning{'' if warnings == 1 else 's'}.")
        if not report.findings:
            st.success("The doctor found nothing to change for this dataset version.")
        for index, finding in enumerate(report.findings):
            row = st.columns([6, 1])
            # (plain text: a finding may name the dataset version's classes)
            (row[0].error if finding.severity == "error" else row[0].warning)(common.plain(finding.message))
            if finding.fix:
                change = ", ".join(f"{path.rsplit('.', 1)[-1]} {value}" for path, value in finding.fix.items())
                row[1].button("Fix it", key=f"doctor_fix_{index}_{digest}", on_click=_apply,
                              args=(finding.fix, change), help="Sets " + ", ".join(
                                  f"{path} = {value}" for path, value in finding.fix.items()))
        if report.boxes:
            left, right = st.columns(2)
            left.caption(f"Best anchor IoU per box, by class (red: matched_threshold {report.matched_threshold:g})")
            left.altair_chart(_iou_chart(report))
            right.caption("Object sizes against the anchors' sizes (dashed: one per level and octave)")
            right.altair_chart(_size_chart(report), width="stretch")
