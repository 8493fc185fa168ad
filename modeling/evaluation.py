"""Evaluate a trained model or an export on a run's validation records:
:func:`evaluate_model`, used by ``evaluate.py --config``.

The model (a checkpoint, by default the run's latest, or an export folder made by
``export.py``) is run over the validation TFRecords of the run's data folder; its COCO
results are scored against the folder's ``val_annotations.json`` with
:func:`maskrcnn_toolkit.modeling.scoring.score`, and written with
:mod:`maskrcnn_toolkit.modeling.eval_outputs` (``detections.json``, ``metrics.json``,
ground truth | prediction images, TensorBoard scalars).
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Iterable

from maskrcnn_toolkit.core.atomic import refuse_existing
from maskrcnn_toolkit.core.dataset_folder import MADE_BY, DatasetFolder
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.json_files import read_json
from maskrcnn_toolkit.modeling.eval_outputs import side_by_side, write_outputs, write_scalars
from maskrcnn_toolkit.modeling.scoring import (
    DEFAULT_BACKEND,
    IOU_TYPES,
    EvalReport,
    check_iou_types,
    gc_paused,
    score,
)
from maskrcnn_toolkit.modeling.scoring_checks import check_ground_truth


def read_val_records(files: list, max_images: int | None = None):
    """Yield (image_id, uint8 [H, W, 3] RGB image) from validation TFRecord ``files``,
    decoded with tf.data; the id is ``image/source_id`` (= the COCO GT image id)."""
    import tensorflow as tf
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/source_id": tf.io.FixedLenFeature([], tf.string)}

    def parse(x):
        f = tf.io.parse_single_example(x, spec)
        img = tf.io.decode_image(f["image/encoded"], channels=3, expand_animations=False)
        return f["image/source_id"], img

    ds = tf.data.TFRecordDataset([str(f) for f in files]).map(parse, num_parallel_calls=2)
    if max_images:
        ds = ds.take(max_images)
    for sid, img in ds.prefetch(2):
        yield int(sid.numpy().decode()), img.numpy()


def _val_images(files: list, ids: list[int]) -> dict:
    """{image id: uint8 [H, W, 3] RGB} of the validation records with those ids (the
    report's galleries: read again, so evaluation keeps no picture in memory)."""
    wanted, found = set(ids), {}
    for image_id, image in read_val_records(files):
        if image_id in wanted:
            found[image_id] = image
            if len(found) == len(wanted):
                break
    return found


def _batches(items, size: int):
    batch = []
    for it in items:
        batch.append(it)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _checkpoint_step(checkpoint: str | None) -> int:
    m = re.search(r"ckpt-(\d+)", checkpoint or "")
    return int(m.group(1)) if m else 0


def _export_folders(model: Path) -> list[Path]:
    """Where an export's label_map.pbtxt / metadata.json may be: the export folder itself,
    or the parent of ``saved_model/`` / ``frozen_graph.pb`` when one of those is given."""
    return [model, model.parent] if model.is_dir() else [model.parent]


def export_metadata(model: str | os.PathLike) -> tuple[dict, Path | None]:
    """(metadata.json of the export ``model``, its path); ({}, None) when there is none."""
    for folder in _export_folders(Path(model)):
        path = folder / "metadata.json"
        if path.is_file():
            meta = read_json(path, "the JSON object export.py writes as metadata.json")
            return (meta if isinstance(meta, dict) else {}), path
    return {}, None


def check_export_label_map(model: str | os.PathLike, run) -> None:
    """Raise UserError when the export ``model`` was made with other classes than the run:
    its ``label_map.pbtxt`` (else ``metadata.json``'s ``classes``) must map the same ids to
    the same names as ``run.label_map``; otherwise its detections would be scored under the
    wrong class names. An export with neither file is taken as the run's."""
    from maskrcnn_toolkit.core.label_map import read_label_map
    theirs, where = None, None
    for folder in _export_folders(Path(model)):
        if (folder / "label_map.pbtxt").is_file():
            where = folder / "label_map.pbtxt"
            theirs = dict(read_label_map(where).names_by_id)
            break
    if theirs is None:
        meta, where = export_metadata(model)
        classes = meta.get("classes")
        if isinstance(classes, dict):
            try:
                theirs = {int(k): str(v) for k, v in classes.items()}
            except ValueError:
                theirs = None
    ours = dict(run.label_map.names_by_id)
    if theirs is not None and theirs != ours:
        raise UserError(
            f"the export {os.fspath(model)!r} was made with other classes than the run: "
            f"{str(where)!r} has {theirs}, the run's label map "
            f"{str(DatasetFolder(run.data_dir).label_map)!r} has {ours}; evaluate the export "
            f"with the config of the run it was exported from")


def evaluate_model(config: str | os.PathLike, checkpoint: str | None = None,
                   model: str | os.PathLike | None = None, max_images: int | None = None,
                   out: str | os.PathLike | None = None, overwrite: bool = False,
                   backend: str = DEFAULT_BACKEND, num_visuals: int | None = None,
                   show_progress: bool = True, pre_nms_score_threshold: float | None = None,
                   iou_types: Iterable[str] = IOU_TYPES,
                   score_threshold: float | None = 0.5) -> tuple[EvalReport, Path]:
    """Run a checkpoint (default: the run's latest) or an export over the run's validation
    TFRecords and score it against the data folder's ``val_annotations.json``.

    Writes into ``out`` (default ``<run_dir>/eval``): ``metrics.json``,
    ``detections.json`` (COCO results: full-size RLE masks, [x, y, w, h] pixel boxes,
    label-map category ids) and ``images/<image_id>.png`` (ground truth | prediction);
    TensorBoard scalars ``segm/AP``... go to ``<run_dir>/eval`` whatever ``out`` is (step =
    the checkpoint's step; for an export, the step of the checkpoint its metadata.json
    names, else 0). Nothing is written until everything is computed, then all outputs are
    renamed into place together: an interruption leaves the previous outputs. An existing
    ``images/`` folder is replaced as a whole (no stale pictures). The default ``out`` is
    replaced without ``overwrite`` (it is the run's own latest evaluation); a given ``out``
    that holds outputs is refused unless ``overwrite``. The model is asked
    for every detection (score threshold 0), as COCO evaluation expects. ``num_visuals``
    (default: the config's ``eval.num_images_to_draw``, else 4) images are drawn.
    ``pre_nms_score_threshold`` overrides the checkpoint model's own (the config's); an
    export keeps the one it was exported with. ``iou_types``: what is scored ("segm",
    "bbox" or both). ``score_threshold``: the operating point of ``report.html`` (written
    beside metrics.json, see :mod:`maskrcnn_toolkit.modeling.report`); None writes no
    report (and removes a previous one).

    Returns (report, output folder).
    """
    from tqdm import tqdm

    from maskrcnn_toolkit.modeling.config import load_run
    from maskrcnn_toolkit.modeling.model import find_checkpoint
    iou_types = check_iou_types(iou_types)
    # The cheap checks first, without TensorFlow: a mistake is answered at once.
    run = load_run(config, experiment=False)
    if model is not None:
        if not Path(model).exists():
            raise UserError(f"model {os.fspath(model)!r} does not exist; give an export folder "
                            f"made by `python export.py`")
        check_export_label_map(model, run)
    else:
        # Resolved once, so the report names the checkpoint that was really evaluated.
        checkpoint = find_checkpoint(run, checkpoint)
    gt_path = DatasetFolder(run.data_dir).ground_truth("val")
    out_dir = Path(out) if out is not None else Path(run.run_dir) / "eval"
    # RUN_DIR/eval is the run's own latest evaluation: re-evaluating a run (after more
    # training, another checkpoint) replaces it without a flag. An --out the user named
    # is refused unless --overwrite.
    overwrite = overwrite or out is None
    metrics_path, results_path = out_dir / "metrics.json", out_dir / "detections.json"
    refuse_existing(metrics_path, overwrite)
    refuse_existing(results_path, overwrite)
    gt = read_json(gt_path, f"the COCO ground truth `{MADE_BY}` writes; re-run it")
    check_ground_truth(gt, str(gt_path), iou_types)
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}

    if model is not None:
        from maskrcnn_toolkit.inference.predictor import Predictor
        # check_export_label_map() made sure the export's own label map is the run's.
        detector = Predictor(model, label_map=run.label_map, score_threshold=0.0)
        meta, _ = export_metadata(model)
        step = _checkpoint_step(str(meta.get("checkpoint") or ""))
        source = f"export {os.fspath(model)}"
        if meta.get("checkpoint"):
            source += f" (of checkpoint {meta['checkpoint']})"
    else:
        from maskrcnn_toolkit.modeling.exporting import load_detector
        run = load_run(config)  # now with Model Garden's experiment, to build the model
        detector = load_detector(run, checkpoint, score_threshold=0.0,
                                 pre_nms_score_threshold=pre_nms_score_threshold)
        source, step = f"checkpoint {checkpoint}", _checkpoint_step(checkpoint)

    if num_visuals is None:
        num_visuals = int(getattr(getattr(run.user, "eval", None), "num_images_to_draw", 4))
    t0 = time.perf_counter()
    results, seen, visuals = [], [], []
    total = len(sizes) if not max_images else min(len(sizes), max_images)
    batch_size = int(getattr(getattr(run.user, "eval", None), "batch_size", 1) or 1)
    # load_run() found the shards (DatasetFolder) and refuses a data folder without any.
    records = read_val_records(run.val_files, max_images)
    with tqdm(total=total, desc="evaluate", unit="img", disable=not show_progress) as bar:
        for batch in _batches(records, batch_size):
            for image_id, _ in batch:
                if image_id not in sizes:
                    raise UserError(
                        f"validation record with image/source_id {image_id} is not in "
                        f"{str(gt_path)!r}; the records and {gt_path.name} come from "
                        f"different conversions; convert the data again")
            for (image_id, image), dets in zip(batch, detector.predict_batch(
                    [im for _, im in batch])):
                results.extend(dets.to_coco(image_id))
                seen.append(image_id)
                if len(visuals) < num_visuals:
                    visuals.append((image_id, image, dets))
            bar.update(len(batch))
    infer_s = time.perf_counter() - t0

    missing = len(sizes) - len(set(seen))
    notes = []
    if max_images or missing:
        # Score only the images the model saw: unseen images would count as all misses.
        keep = set(seen)
        gt = dict(gt, images=[im for im in gt["images"] if im["id"] in keep],
                  annotations=[a for a in gt["annotations"] if a["image_id"] in keep])
        notes.append(f"scored on {len(keep)} of {len(sizes)} validation images"
                     + (" (--max-images)" if max_images else
                        f"; {missing} ground-truth images have no record"))
    # The COCO results text is made before scoring: score() consumes its inputs, and what
    # is scored must be exactly what is saved.
    results_text = json.dumps(results)
    # score() consumes its inputs; the drawings need an intact ground truth.
    gt_for_drawing = json.loads(json.dumps({"categories": gt["categories"],
                                            "annotations": [a for a in gt["annotations"]
                                                            if a["image_id"] in
                                                            {v[0] for v in visuals}]}))
    with gc_paused():
        report = score(gt, results, iou_types, backend, str(results_path),
                       label_map_ids=dict(run.label_map.names_by_id),
                       analysis_threshold=score_threshold)
    report.warnings[:0] = notes
    report.extras = {"source": source, "step": step, "inference_seconds": round(infer_s, 3)}
    report.seconds = time.perf_counter() - t0
    pictures = [(image_id, side_by_side(image, gt_for_drawing, image_id, dets))
                for image_id, image, dets in visuals]
    html = None
    if score_threshold is not None:
        from maskrcnn_toolkit.modeling.report import build_report
        html = build_report(report, f"{source}, {run.config_path}",
                            load_images=lambda ids: _val_images(run.val_files, ids),
                            run_dir=run.run_dir, data_dir=run.data_dir)
    write_outputs(out_dir, results_text, report, pictures, html)
    write_scalars(Path(run.run_dir) / "eval", report, step)
    return report, out_dir
