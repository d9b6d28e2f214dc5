"""Predict: try a registered model on uploaded or project images; filter by score and class
without running the model again; download COCO-results JSON, CSV and annotated images."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from backend import images, inference, model_registry, predictions
from pages import common

project = common.require_project()
st.title("Predict")


@st.cache_resource(max_entries=3, show_spinner="Loading the model…")
def load_model(path: str, stamp: float) -> inference.DetectionModel:
    """One loaded model per export path and modification time: a re-export is loaded again."""
    return inference.load_model(path, warm_up=True)


registry = [m for m in model_registry.list_models(common.db(), project["id"]) if m["available"]]
if not registry:
    st.info("No model to try yet: register one on the Models page.")
    st.stop()
default = next((i for i, m in enumerate(registry) if m["is_current"]), 0)  # else the newest
model_row = st.selectbox("Model", registry, index=default,
                         format_func=lambda m: f"#{m['id']} {m['name']}" + (" ★ current" if m["is_current"] else ""))

upload_tab, project_tab = st.tabs(["Upload images", "Project images"])
with upload_tab:
    with st.form("predict_uploads"):
        files = st.file_uploader("Images", accept_multiple_files=True,
                                 type=sorted(e.lstrip(".") for e in images.IMAGE_EXTENSIONS))
        run_uploads = st.form_submit_button("Predict", type="primary")
with project_tab:
    with st.form("predict_project_images"):
        choices = images.list_images(common.db(), project["id"], limit=500)
        picked = st.multiselect("Images of this project", [r["id"] for r in choices], key="predict_pick",
                                format_func=lambda i: next(f"#{r['id']} {r['filename']} ({r['status']})"
                                                           for r in choices if r["id"] == i))
        run_project = st.form_submit_button("Predict", type="primary")

sources, image_ids = [], []
if run_uploads and files:
    sources = [(f.name, f.getvalue()) for f in files]
    image_ids = list(range(1, len(sources) + 1))
elif run_project and picked:
    sources = predictions.image_sources(common.db(), project["id"], picked)
    image_ids = picked
if sources:
    with common.reported():
        model = load_model(model_row["path"], inference.model_stamp(model_row["path"]))
        bar = st.progress(0.0, text="Predicting…")
        results, errors = [], []
        for done, (image_id, result) in enumerate(zip(image_ids, inference.predict_many(model, sources)),
                                                  start=1):
            if isinstance(result, tuple):
                errors.append(result)
            else:
                results.append((image_id, result))
            bar.progress(done / len(sources), text=f"{done}/{len(sources)} predicted")
        bar.empty()
        # Raw detections stay in the session: the filters below never run the model again.
        st.session_state["predict_results"] = {"model_id": model_row["id"], "warnings": model.warnings,
                                               "errors": errors, "label_map": model.label_map,
                                               "results": results}

state = st.session_state.get("predict_results")
if not state:
    # Load (and warm up) the chosen model while the user picks images: the first prediction is then quick.
    with common.reported():
        load_model(model_row["path"], inference.model_stamp(model_row["path"]))
    st.stop()
for warning in state["warnings"]:
    st.warning(common.plain(common.shown_in(warning)))
for name, message in state["errors"]:
    st.error(f"{common.plain(name)}: {common.plain(common.shown_in(message))}")
if state["model_id"] != model_row["id"]:
    # Never show one model's detections under another's name.
    st.info(f"The last detections came from model #{state['model_id']}; press Predict to try "
            f"#{model_row['id']} {common.plain(model_row['name'])}.")
    st.stop()
results = state["results"]
if not results:
    st.stop()

found_ids = sorted({d.class_id for _, r in results for d in r.detections})
names = {i: state["label_map"].get(i, str(i)) for i in found_ids}
left, right = st.columns([1, 2])
min_score = left.slider("Score threshold", 0.0, 1.0, 0.5, 0.01, key="predict_min_score")
# Keyed by the classes found: a later prediction that finds other classes starts with all of them
# selected, instead of keeping a selection made among the previous ones.
class_ids = right.multiselect("Classes", found_ids, default=found_ids, format_func=lambda i: names[i],
                              key="predict_classes_" + "_".join(map(str, found_ids)))

predictions_only = [r for _, r in results]
downloads = st.columns(2)
downloads[0].download_button(
    "Download JSON (COCO results)", mime="application/json", file_name="predictions_coco.json",
    data=json.dumps(inference.coco_results(results, min_score, class_ids), indent=1))
downloads[1].download_button("Download CSV", mime="text/csv", file_name="predictions.csv",
                             data=inference.csv_text(predictions_only, min_score, class_ids))
st.caption("COCO `image_id`s are the project's image ids for project images, and the upload order "
           "(1, 2, …) for uploaded files; boxes are pixels of the image as oriented at ingest.")

for image_id, prediction in results:
    rows = inference.table_rows(prediction, min_score, class_ids)
    st.markdown(f"**{common.plain(prediction.image)}** · {prediction.width}×{prediction.height} · "
                f"{len(rows)} detection{'s' if len(rows) != 1 else ''} scoring ≥ {min_score:.2f} · "
                f"{prediction.latency_ms:.0f} ms (model {prediction.timings_ms['inference']:.0f} ms)")
    picture, table = st.columns([3, 2])
    drawn = inference.annotated(prediction, min_score, class_ids)
    picture.image(drawn, width="stretch")
    table.dataframe(pd.DataFrame(rows, columns=["class_id", "class", "score", "xmin", "ymin", "xmax", "ymax"]),
                    hide_index=True, width="stretch")
    table.download_button("Annotated PNG", data=inference.png_bytes(drawn), mime="image/png",
                          file_name=f"{prediction.image.rsplit('.', 1)[0]}_boxes.png", key=f"png_{image_id}")
