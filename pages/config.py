"""Configs: edit a pipeline.config (form for the usual fields, raw editor), check it against a
dataset version, fill it from one, see what changed, save it as a new version."""
from __future__ import annotations

import hashlib

import streamlit as st

from backend import auth, config_check, dataset_versions, saved_configs, zoo
from pages import common, doctor_panel

project = common.require_project()
user = common.user()
can_train = auth.can(user, "train")
db = common.db()
st.title(f"Pipeline configs of {common.plain(project['name'])}")

saved = saved_configs.all_configs(db, project["id"])
templates = saved_configs.templates()
versions = dataset_versions.list_versions(db, project["id"], fmt="tfrecord")

# ---------------------------------------------------------------- what to start from

left, right = st.columns(2)
sources = ["saved", "template"] if saved else ["template"]
source = left.selectbox("Start from", sources, key="config_source",
                        format_func={"saved": "a saved config", "template": "a template"}.get)
if source == "saved":
    choice = right.selectbox("Saved config", [c["id"] for c in saved], key="config_choice_saved",
                             format_func=lambda i: saved_configs.config_title(saved_configs.get_config(db, i)))
    loaded = saved_configs.get_config(db, choice)
    base_text, base_name = loaded["text"], loaded["name"]
else:
    choice = right.selectbox("Template", list(templates), key="config_choice_template")
    base_text, base_name = templates[choice], choice
# Non-admins see (and edit) the paths inside the data folder relative to it, which is where the
# backend reads a relative path they give from.
base_text = common.shown_in(base_text)

# Streamlit drops a widget's state on a page it was not drawn on: coming back, the editor and
# the name come from copies kept under keys of no widget (the edits survive the visit).
for widget_key in ("config_text", "config_name"):
    if widget_key not in st.session_state and f"{widget_key}_kept" in st.session_state:
        st.session_state[widget_key] = st.session_state[f"{widget_key}_kept"]
if st.session_state.get("config_loaded") != (source, choice) or "config_text" not in st.session_state:
    # Another config chosen: load it into the editor (edits to the previous one are dropped).
    st.session_state["config_loaded"] = (source, choice)
    st.session_state["config_text"] = base_text
    st.session_state["config_name"] = base_name


def set_text(text: str) -> None:
    st.session_state["config_text"] = common.shown_in(text)


def fill_from_version() -> None:
    with common.reported("Filled paths and num_classes from the dataset version"):
        set_text(saved_configs.fill_from_dataset_version(st.session_state["config_text"],
                                                   st.session_state["config_version"]))


def apply_form(digest: str) -> None:
    text = st.session_state["config_text"]
    values = {path: st.session_state[f"field_{path}_{digest}"] for _, path in saved_configs.form_fields(text)}
    values["augmentations"] = st.session_state[f"augmentations_{digest}"]
    with common.reported("Fields applied"):
        set_text(saved_configs.set_common_fields(text, values))


def save() -> None:
    with common.reported("Saved as a new version"):
        row = saved_configs.save_config(db, user, project["id"], st.session_state["config_name"],
                                  st.session_state["config_text"])
        st.session_state["config_loaded"] = ("saved", row["id"])
        st.session_state["config_source"] = "saved"
        st.session_state["config_choice_saved"] = row["id"]


def train_from(choices: list) -> None:
    source, ident, title = choices[st.session_state["config_train_from"]]
    with common.reported(f"The config now trains from {title}"):
        set_text(zoo.start_from(db, st.session_state["config_text"], source, ident))


start_choices = zoo.start_from_choices(db, project["id"])
row = st.columns([3, 1])
row[0].selectbox("Train from", range(len(start_choices)), key="config_train_from",
                 format_func=lambda i: start_choices[i][2],
                 help="scratch, a previous run's checkpoint, or a starting point (its architecture and "
                      "input size come along); writes fine_tune_checkpoint and its type")
row[1].button("Apply", key="config_train_from_apply", on_click=train_from, args=(start_choices,))

text = st.session_state["config_text"]
st.session_state["config_text_kept"] = text
st.session_state["config_name_kept"] = st.session_state.get("config_name", base_name)
problem = saved_configs.syntax_problem(text)
digest = hashlib.sha1(text.encode()).hexdigest()[:10]

# ---------------------------------------------------------------- the usual fields

if problem is None:
    values = saved_configs.common_fields(text)
    with st.expander("Common fields", expanded=True), st.form(f"fields_{digest}"):
        columns = st.columns(3)
        for index, (label, path) in enumerate(saved_configs.form_fields(text)):
            value, column = values[path], columns[index % 3]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                column.number_input(label, value=value, key=f"field_{path}_{digest}", help=path,
                                    format="%d" if isinstance(value, int) else "%g")
            else:
                column.text_input(label, value="" if value is None else str(value),
                                  key=f"field_{path}_{digest}", help=path)
        st.multiselect("Augmentation options", saved_configs.AUGMENTATIONS, default=values["augmentations"],
                       key=f"augmentations_{digest}")
        st.form_submit_button("Apply to the text", on_click=apply_form, args=(digest,))

# ---------------------------------------------------------------- the raw text

st.text_area("pipeline.config", key="config_text", height=480)
if problem is not None:
    st.error(f"Syntax error: {common.plain(common.shown_in(problem.message))}")

if versions:
    row = st.columns([3, 1, 1])
    version = row[0].selectbox("Dataset version (newest first)", versions, key="config_version",
                               format_func=lambda v: v.title())
    row[1].button("Fill from dataset version", on_click=fill_from_version, disabled=problem is not None)
    if row[2].button("Validate", disabled=problem is not None):
        found = config_check.check(text, version, actor=user)
        if found:
            st.error(common.plain(common.shown_in("\n".join(f"- {p}" for p in found))))  # (they quote the text)
        else:
            st.success("The config has no problems with this dataset version.")
    if problem is None:
        doctor_panel.show(text, version)
else:
    st.caption("Export a TFRecord dataset version (Datasets page) to fill and validate against it.")
    if st.button("Validate", disabled=problem is not None):
        found = config_check.check(text, actor=user)
        if found:
            st.error(common.plain(common.shown_in("\n".join(f"- {p}" for p in found))))  # (they quote the text)
        else:
            st.success("The config has no problems.")

# ---------------------------------------------------------------- changes and saving

changes = saved_configs.diff(base_text, text, f"{base_name} (loaded)", "edited")
st.caption("Changes against the loaded config")
st.code(changes or "(no changes)", language="diff")
if can_train:
    row = st.columns([3, 1])
    row[0].text_input("Name", key="config_name")
    row[1].button("Save as a new version", type="primary", on_click=save, disabled=problem is not None)
