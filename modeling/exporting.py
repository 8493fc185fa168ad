"""Export a trained Model Garden Mask R-CNN: SavedModel + OD API-style frozen graph.

Layout written by :func:`export` (atomically: a temporary sibling folder renamed at the end)::

    DIR/saved_model/      signatures serving_default / image_tensor / encoded_image /
                      image_tensor_box_masks
    DIR/frozen_graph.pb   drop-in for a TF OD API frozen_inference_graph.pb
    DIR/label_map.pbtxt   ids 1..N
    DIR/metadata.json     classes, input size, score threshold, provenance, output docs

Why a wrapper around Model Garden's ``DetectionModule`` (docs/DESIGN_NOTES.md, Export and
inference; measured on MG 2.20): its serving outputs are boxes in pixels of the *resized,
padded* model input (they must be divided by ``image_info[:, 2]``), 28x28 box-relative mask
probabilities, int32 classes and counts, and frozen tensors named ``Identity_N``. We keep
its preprocessing (the same normalize + resize-and-pad as training) and fix the outputs
in-graph, so nobody downstream post-processes.

SavedModel signatures (``serving_default`` and ``image_tensor`` are the same function):

- ``image_tensor``: input ``images`` uint8 [B, H, W, 3] RGB, any H, W (one size per call).
- ``encoded_image``: input ``encoded_images`` string [B], JPEG/PNG bytes, all of one size.
  (EXIF orientation is *not* applied in-graph; :func:`inference.load_image` applies it.)
- ``image_tensor_box_masks``: input ``images`` (as ``image_tensor``); the same outputs
  except ``detection_masks``, float32 [B, N, mh, mw] box-relative probabilities (as the
  frozen graph's, not pasted). ``inference.Predictor`` calls this one and pastes only the
  rows it keeps with ``core.masks.paste_box_masks`` (the same pixels, see
  :func:`paste_box_masks_binary`): pasting all 100 rows at 640x480 and returning 30 MB
  cost half the network's time in-graph (docs/DESIGN_NOTES.md, Export and inference).

  Outputs of all (N = the largest detection count in the batch, rows past
  ``num_detections[b]`` are zero padding):
  ``detection_boxes`` float32 [B, N, 4] (ymin, xmin, ymax, xmax) in input-image pixels;
  ``detection_scores`` float32 [B, N]; ``detection_classes`` int32 [B, N] label-map ids;
  ``num_detections`` int32 [B]; ``detection_masks`` uint8 [B, N, H, W] 0/1 at input-image
  size (box-relative probabilities pasted as the OD API does, thresholded at > 0.5; empty
  for a box under 1 pixel tall or wide, in both outputs; see
  :func:`paste_box_masks_binary`).

Frozen graph tensors (OD API names and conventions, M = max detections, fixed):
``image_tensor:0`` uint8 [B, H, W, 3] → ``detection_boxes:0`` float32 [B, M, 4] normalized
(ymin, xmin, ymax, xmax); ``detection_scores:0`` float32 [B, M]; ``detection_classes:0``
float32 [B, M] label-map ids; ``num_detections:0`` float32 [B]; ``detection_masks:0``
float32 [B, M, mh, mw] box-relative probabilities.
"""
from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata as importlib_metadata
from pathlib import Path

import tensorflow as tf

from maskrcnn_toolkit.core.atomic import atomic_dir, refuse_existing
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.export_folder import (
    FROZEN_GRAPH,
    LABEL_MAP,
    METADATA,
    SAVED_MODEL,
    is_export_file,
)
from maskrcnn_toolkit.core.label_map import LabelMap, write_label_map

FROZEN_INPUT = "image_tensor"

OUTPUT_DOCS = {
    "saved_model": {
        "signatures": {
            "serving_default": "same as image_tensor",
            "image_tensor": {"input": "images", "dtype": "uint8", "shape": "[B, H, W, 3]",
                             "channels": "RGB", "note": "any H, W; one size per call"},
            "encoded_image": {"input": "encoded_images", "dtype": "string", "shape": "[B]",
                              "note": "JPEG/PNG bytes, all images of one size per call; "
                                      "EXIF orientation is not applied"},
            "image_tensor_box_masks": {
                "input": "images", "dtype": "uint8", "shape": "[B, H, W, 3]",
                "note": "the same outputs except detection_masks: float32 [B, N, mh, mw] "
                        "box-relative probabilities, not pasted (paste with "
                        "reframe_box_masks_to_image_masks, then > 0.5)"},
        },
        "outputs": {
            "detection_boxes": {"dtype": "float32", "shape": "[B, N, 4]",
                                "order": "ymin, xmin, ymax, xmax",
                                "units": "pixels of the input image"},
            "detection_scores": {"dtype": "float32", "shape": "[B, N]",
                                 "note": "sorted descending"},
            "detection_classes": {"dtype": "int32", "shape": "[B, N]",
                                  "note": "label-map ids (1..N)"},
            "num_detections": {"dtype": "int32", "shape": "[B]",
                               "note": "rows past num_detections[b] are zero padding"},
            "detection_masks": {"dtype": "uint8", "shape": "[B, N, H, W]",
                                "note": "0/1 at input-image size; empty for a box under "
                                        "1 pixel tall or wide"},
        },
        "N": "the largest num_detections in the batch",
    },
    "frozen_graph": {
        "input": {"name": "image_tensor:0", "dtype": "uint8", "shape": "[B, H, W, 3]"},
        "outputs": {
            "detection_boxes:0": {"dtype": "float32", "shape": "[B, M, 4]",
                                  "order": "ymin, xmin, ymax, xmax",
                                  "units": "normalized to [0, 1] by image size"},
            "detection_scores:0": {"dtype": "float32", "shape": "[B, M]"},
            "detection_classes:0": {"dtype": "float32", "shape": "[B, M]",
                                    "note": "label-map ids"},
            "num_detections:0": {"dtype": "float32", "shape": "[B]"},
            "detection_masks:0": {"dtype": "float32", "shape": "[B, M, mh, mw]",
                                  "note": "box-relative probabilities (OD API convention); "
                                          "paste with reframe_box_masks_to_image_masks"},
        },
        "M": "max_num_detections of the model (fixed)",
    },
}


# ----------------------------------------------------------------------------- graph code

def _crop_and_resize_samples(r0, r1, start, count, out_size, in_size):
    """Where ``tf.image.crop_and_resize`` (bilinear) samples its input, for output pixels
    ``start[k] + [0, count)`` along one axis: the crop spans ``[r0, r1]`` (float32 [K],
    normalized input coordinates), the output axis is ``out_size`` long, the input axis
    ``in_size``. Same float32 operations in the same order as the kernel
    (crop_and_resize_op.cc), so the samples are bit-identical.

    Returns valid bool [K, count] (the sample lies inside the input; else the kernel gives
    its extrapolation value, 0 here), lo / hi int32 [K, count] (floor / ceil input index,
    clipped) and lerp float32 [K, count] (sample - floor).
    """
    in_f = tf.cast(in_size, tf.float32)
    i = tf.cast(start[:, None] + tf.range(count)[None, :], tf.float32)
    scale = (r1 - r0) * (in_f - 1.0) / (tf.cast(out_size, tf.float32) - 1.0)
    c = r0[:, None] * (in_f - 1.0) + i * scale[:, None]
    # A 1-pixel output axis samples the crop's middle (the kernel's special case).
    middle = (0.5 * (r0 + r1) * (in_f - 1.0))[:, None]
    c = tf.where(out_size > 1, c, tf.broadcast_to(middle, tf.shape(c)))
    valid = (c >= 0.0) & (c <= in_f - 1.0)
    floor = tf.floor(c)
    lo = tf.clip_by_value(tf.cast(floor, tf.int32), 0, in_size - 1)
    hi = tf.clip_by_value(tf.cast(tf.math.ceil(c), tf.int32), 0, in_size - 1)
    return valid, lo, hi, c - floor


def _box_window(a, b, size):
    """(start int32 [K], count int32 scalar): one window length for all K boxes that covers
    every pixel whose sample can fall inside its box, a box spanning [a, b] (normalized)
    of a ``size``-pixel axis; windows are moved back to end inside the image."""
    last = tf.cast(size, tf.float32) - 1.0
    # Samples inside the box are the pixels i with a*(size-1) <= i <= b*(size-1); one pixel
    # of margin each side absorbs float rounding (validity itself is decided per pixel).
    start = tf.clip_by_value(tf.cast(tf.floor(a * last), tf.int32) - 1, 0, size - 1)
    stop = tf.clip_by_value(tf.cast(tf.math.ceil(b * last), tf.int32) + 2, 1, size)
    count = tf.reduce_max(tf.concat([stop - start, [1]], 0))
    return tf.minimum(start, size - count), count


def paste_box_masks_binary(box_masks: tf.Tensor, boxes_yxyx_norm: tf.Tensor, height, width
                           ) -> tf.Tensor:
    """Paste box-relative masks into the image and threshold them at > 0.5: the same pixels
    as the OD API's ``reframe_box_masks_to_image_masks`` (``tf.image.crop_and_resize`` of
    the image's unit box in each box's frame, zero outside the box) ``> 0.5``, and as
    ``core.masks.paste_box_masks(...) > 0.5`` up to float32 rounding ties.

    Args:
      box_masks: float32 [K, mh, mw] probabilities covering each box.
      boxes_yxyx_norm: float32 [K, 4] (ymin, xmin, ymax, xmax) normalized by the image size.
      height, width: int32 scalars, output size.
    Returns:
      uint8 [K, height, width], values 0/1.

    Why not crop_and_resize at [height, width] (docs/DESIGN_NOTES.md, Export and
    inference): that interpolates every pixel of every mask as float32, most of them outside
    the box (100 detections at 480x640 = 123 MB per pass), and it cost more than the
    network. Here the bilinear interpolation runs only over a window around each box (one
    window size for all K, the largest box's), in crop_and_resize's own float32 operations
    and order (x first on the mask's rows, then y: ``top = tl + (tr - tl) * x_lerp``,
    ``out = top + (bottom - top) * y_lerp``), so the probabilities are the kernel's bit for
    bit; each uint8 window is then padded into place. Measured on 100 random-weight
    detections at 480x640: ~40 ms instead of ~200 ms.
    """
    mh, mw = tf.shape(box_masks)[1], tf.shape(box_masks)[2]
    y0, x0, y1, x1 = tf.unstack(boxes_yxyx_norm, axis=1)
    # Same degenerate-box guard as core.masks.paste_box_masks: Model Garden's own
    # paste_instance_masks_v2 crashes on zero-height boxes (docs/DESIGN_NOTES.md, Export and
    # inference).
    bh = tf.maximum(y1 - y0, 1e-12)
    bw = tf.maximum(x1 - x0, 1e-12)
    # The image's unit box expressed in each box's own normalized frame (the crop box
    # the OD API passes to crop_and_resize).
    ry0, rx0, ry1, rx1 = -y0 / bh, -x0 / bw, (1.0 - y0) / bh, (1.0 - x0) / bw
    ya, wh = _box_window(y0, y1, height)
    xa, ww = _box_window(x0, x1, width)
    valid_y, top, bottom, y_lerp = _crop_and_resize_samples(ry0, ry1, ya, wh, height, mh)
    valid_x, left, right, x_lerp = _crop_and_resize_samples(rx0, rx1, xa, ww, width, mw)
    mask_l = tf.gather(box_masks, left, axis=2, batch_dims=1)    # [K, mh, ww]
    mask_r = tf.gather(box_masks, right, axis=2, batch_dims=1)
    rows = mask_l + (mask_r - mask_l) * x_lerp[:, None, :]
    row_t = tf.gather(rows, top, axis=1, batch_dims=1)          # [K, wh, ww]
    row_b = tf.gather(rows, bottom, axis=1, batch_dims=1)
    inside = valid_y[:, :, None] & valid_x[:, None, :]
    window = tf.cast((row_t + (row_b - row_t) * y_lerp[:, :, None] > 0.5) & inside, tf.uint8)

    # One pad per box (a batched gather or transpose placement measured 2x slower here).
    def place(args):
        win, y, x = args
        return tf.pad(win, [[y, height - wh - y], [x, width - ww - x]])

    # map_fn over no boxes stacks to shape [0], not [0, height, width].
    return tf.cond(
        tf.shape(box_masks)[0] > 0,
        lambda: tf.map_fn(place, (window, ya, xa),
                          fn_output_signature=tf.TensorSpec([None, None], tf.uint8)),
        lambda: tf.zeros([0, height, width], tf.uint8))


class ServingModule(tf.Module):
    """The model plus Model Garden's serving preprocessing plus our output fixing.

    ``_raw`` is the shared core; ``serve_images`` / ``serve_encoded`` /
    ``serve_box_masks`` give the SavedModel outputs, ``serve_odapi`` the frozen graph's
    (see the module docstring).
    """

    def __init__(self, model, params, input_size):
        super().__init__(name="maskrcnn_serving")
        from official.vision.serving import detection
        # Not `self.model = model`: a tracked Keras model makes tf.saved_model.save run
        # Keras' own serialization, which re-traces every layer (most of the export time
        # here) for nothing a user of the export needs. A plain bound method is not
        # tracked; export_model saves the variables in a bare holder beside the signatures.
        self._mg_serve = detection.DetectionModule(
            params, batch_size=None, input_image_size=[int(s) for s in input_size[:2]],
            model=model).serve

    def _raw(self, images):
        """images uint8 [B, H, W, 3] → (boxes_yxyx_px [B, M, 4] in input pixels,
        boxes_yxyx_norm [B, M, 4], scores [B, M], classes int32 [B, M], num int32 [B], box
        masks [B, M, mh, mw])."""
        out = self._mg_serve(images)
        info = out["image_info"]  # [B, 4, 2]: original, resized, scale, offset (y, x)
        scale = tf.tile(info[:, 2:3, :], [1, 1, 2])
        size = tf.tile(info[:, 0:1, :], [1, 1, 2])  # (h, w, h, w)
        boxes_yxyx_px = tf.clip_by_value(out["detection_boxes"] / scale, 0.0, size)
        num = tf.cast(out["num_detections"], tf.int32)
        m = tf.shape(boxes_yxyx_px)[1]
        valid = tf.sequence_mask(num, m)  # padding rows are zeroed so both outputs agree
        validf = tf.cast(valid, tf.float32)
        boxes_yxyx_px = boxes_yxyx_px * validf[..., None]
        scores = out["detection_scores"] * validf
        classes = tf.cast(out["detection_classes"], tf.int32) * tf.cast(valid, tf.int32)
        # A box under 1 pixel tall or wide (a barely trained model clips some to the image
        # edge, zero height) gets an empty mask: its box-relative mask means nothing, and
        # pasting it divides by ~0, which TF and numpy round differently.
        has_area = ((boxes_yxyx_px[..., 2] - boxes_yxyx_px[..., 0] >= 1.0)
                    & (boxes_yxyx_px[..., 3] - boxes_yxyx_px[..., 1] >= 1.0))
        masks = out["detection_masks"] * tf.cast(valid & has_area, tf.float32)[..., None, None]
        return boxes_yxyx_px, boxes_yxyx_px / size, scores, classes, num, masks

    def _trimmed(self, images):
        """``_raw`` cut to N = the largest detection count in the batch (rows past
        ``num[b]`` are zero): (boxes_yxyx_px, boxes_yxyx_norm, scores, classes, num, box
        masks)."""
        boxes_yxyx_px, boxes_yxyx_norm, scores, classes, num, masks = self._raw(images)
        n = tf.reduce_max(tf.concat([num, [0]], 0))
        return (boxes_yxyx_px[:, :n], boxes_yxyx_norm[:, :n], scores[:, :n], classes[:, :n],
                num, masks[:, :n])

    def _full(self, images):
        """The SavedModel outputs (module docstring), masks pasted at image size."""
        boxes_yxyx_px, boxes_yxyx_norm, scores, classes, num, masks = self._trimmed(images)
        b, h, w = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
        n, mh, mw = tf.shape(masks)[1], tf.shape(masks)[2], tf.shape(masks)[3]
        full = paste_box_masks_binary(tf.reshape(masks, [-1, mh, mw]),
                                      tf.reshape(boxes_yxyx_norm, [-1, 4]), h, w)
        return {"detection_boxes": boxes_yxyx_px, "detection_scores": scores,
                "detection_classes": classes, "num_detections": num,
                "detection_masks": tf.reshape(full, [b, n, h, w])}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8,
                                                name="images")])
    def serve_images(self, images):
        return self._full(images)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8,
                                                name="images")])
    def serve_box_masks(self, images):
        boxes_yxyx_px, _, scores, classes, num, masks = self._trimmed(images)
        return {"detection_boxes": boxes_yxyx_px, "detection_scores": scores,
                "detection_classes": classes, "num_detections": num,
                "detection_masks": masks}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="encoded_images")])
    def serve_encoded(self, encoded_images):
        def decode(data):
            img = tf.image.decode_image(data, channels=3, expand_animations=False)
            img.set_shape([None, None, 3])
            return img
        images = tf.map_fn(decode, encoded_images,
                           fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
        return self.serve_images(images)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8,
                                                name=FROZEN_INPUT)])
    def serve_odapi(self, image_tensor):
        _, boxes_yxyx_norm, scores, classes, num, masks = self._raw(image_tensor)
        return {"detection_boxes": boxes_yxyx_norm, "detection_scores": scores,
                "detection_classes": tf.cast(classes, tf.float32),
                "num_detections": tf.cast(num, tf.float32), "detection_masks": masks}


def set_score_threshold(model, score_threshold: float | None) -> float:
    """Set the detection generator's pre-NMS score threshold (before any tracing) and
    return the threshold in effect.

    Why pre-NMS: NMS only suppresses boxes under a higher-scored one, so dropping boxes
    below ``t`` before NMS keeps the same set as filtering after it, and it is the only
    way to get *lower* scores out (a model trained a few steps has nothing above Model
    Garden's default 0.05; docs/DESIGN_NOTES.md, Export and inference). Model Garden reads
    ``_config_dict`` at call time.
    """
    cfg = model.detection_generator._config_dict
    if score_threshold is not None:
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise UserError(f"score threshold {score_threshold} must be in [0, 1]")
        cfg["pre_nms_score_threshold"] = float(score_threshold)
    return float(cfg["pre_nms_score_threshold"])


def freeze(module: ServingModule) -> tf.compat.v1.GraphDef:
    """A self-contained GraphDef of ``serve_odapi`` with variables folded in and the
    OD API tensor names (``image_tensor:0`` → ``detection_*:0``)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    concrete = module.serve_odapi.get_concrete_function()
    frozen = convert_variables_to_constants_v2(
        # Keeping functional While/If ops (TF >= 1.15 Sessions run them) halves the freeze
        # time; lowering them to TF1 Switch/Merge buys nothing for import_graph_def users.
        concrete, lower_control_flow=False)
    gd = frozen.graph.as_graph_def()
    names = {n.name for n in gd.node}
    if FROZEN_INPUT not in names:
        raise RuntimeError(f"frozen graph lost its input {FROZEN_INPUT!r}")
    # The frozen function's outputs are Identity_N; add TF1-style names on top of them.
    named = tf.nest.pack_sequence_as(concrete.structured_outputs, frozen.outputs)
    for key, tensor in named.items():
        if key in names:
            raise RuntimeError(f"frozen graph already has a node named {key!r}")
        node = gd.node.add()
        node.name, node.op = key, "Identity"
        node.input.append(tensor.name[:-2] if tensor.name.endswith(":0") else tensor.name)
        node.attr["T"].type = tensor.dtype.as_datatype_enum
    return gd


# ----------------------------------------------------------------------------- export

def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("tensorflow", "tf-models-official", "tf-keras", "numpy"):
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def export_model(model, params, label_map: LabelMap, out_dir: str | os.PathLike,
                 overwrite: bool = False, score_threshold: float | None = None,
                 provenance: dict | None = None, quiet: bool = False) -> dict:
    """Export an already built and restored Model Garden Mask R-CNN.

    Args:
      model: the tf_keras MaskRCNNModel (changed in place: its pre-NMS score threshold).
      params: the Model Garden ExperimentConfig it was built from.
      label_map: class ids 1..N.
      out_dir: the export folder (refused when it exists, unless ``overwrite``).
      score_threshold: the lowest score any output will have; None keeps the config's
        ``detection_generator.pre_nms_score_threshold``.
      provenance: extra metadata (checkpoint, config) stored in metadata.json.
    Returns:
      the metadata dict (also in ``DIR/metadata.json``).
    """
    out_dir = Path(out_dir)
    refuse_existing(out_dir, overwrite, "export folder")
    t0 = time.perf_counter()
    input_size = [int(s) for s in params.task.model.input_size[:2]]
    threshold = set_score_threshold(model, score_threshold)
    module = ServingModule(model, params, input_size)
    meta = {
        "format": "maskrcnn-toolkit export v1",
        "classes": {str(i): n for i, n in label_map.names_by_id.items()},
        "input_size": input_size,
        "score_threshold": threshold,
        "max_detections": int(params.task.model.detection_generator.max_num_detections),
        "mask_size": None,
        **(provenance or {}),
        "versions": _versions(),
        "tensors": OUTPUT_DOCS,
    }
    with atomic_dir(out_dir, overwrite=overwrite, owned=is_export_file) as tmp:
        images_fn = module.serve_images.get_concrete_function()
        signatures = {"serving_default": images_fn, "image_tensor": images_fn,
                      "encoded_image": module.serve_encoded.get_concrete_function(),
                      "image_tensor_box_masks":
                          module.serve_box_masks.get_concrete_function()}
        # Save a bare holder of the variables plus the signatures: saving `module` itself
        # would also trace and store its other tf.functions (serve_odapi).
        holder = tf.Module()
        holder.model_variables = list(model.variables)
        # Keras warns about every unbuilt training-only layer (samplers): noise for a user.
        level = tf.get_logger().level
        tf.get_logger().setLevel("ERROR")
        try:
            tf.saved_model.save(
                holder, str(tmp / SAVED_MODEL), signatures=signatures,
                # no gradients are needed for serving; tracing them is slow
                options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
        finally:
            tf.get_logger().setLevel(level)
        gd = freeze(module)
        meta["mask_size"] = [int(d) for d in
                             module.serve_odapi.get_concrete_function()
                             .structured_outputs["detection_masks"].shape[2:]]
        with open(tmp / FROZEN_GRAPH, "wb") as f:
            f.write(gd.SerializeToString())
        write_label_map(tmp / LABEL_MAP, label_map)
        with open(tmp / METADATA, "w") as f:
            json.dump(meta, f, indent=2)
    if not quiet:
        print(f"exported {len(label_map)} classes in {time.perf_counter() - t0:.0f} s to "
              f"{out_dir}: saved_model/ {_mb(_dir_size(out_dir / SAVED_MODEL))}, "
              f"frozen_graph.pb {_mb(_dir_size(out_dir / FROZEN_GRAPH))}, "
              f"score threshold {threshold:g}")
    return meta


def _build_and_restore(run, checkpoint):
    from maskrcnn_toolkit.modeling.model import build_model, find_checkpoint, restore
    prefix = find_checkpoint(run, checkpoint)  # before the (slow) build: a mistake is cheap
    model = build_model(run)
    return model, restore(model, prefix)


def export(run, out_dir: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
           overwrite: bool = False, score_threshold: float | None = None,
           quiet: bool = False) -> dict:
    """Build the run's model, restore ``checkpoint`` (default: the latest in the run
    directory) and write the export folder (see the module docstring). Returns metadata."""
    refuse_existing(out_dir, overwrite, "export folder")
    model, restored = _build_and_restore(run, checkpoint)
    provenance = {"checkpoint": os.fspath(restored),
                  "config": os.fspath(getattr(run, "config_path", "") or "") or None,
                  "run_dir": os.fspath(run.run_dir)}
    return export_model(model, run.experiment, run.label_map, out_dir, overwrite=overwrite,
                        score_threshold=score_threshold, provenance=provenance, quiet=quiet)


def detector_from_model(model, params, label_map: LabelMap, score_threshold: float = 0.0,
                        pre_nms_score_threshold: float | None = None):
    """An in-memory Predictor over ``model`` with the export's exact post-processing."""
    from maskrcnn_toolkit.inference.predictor import Predictor
    set_score_threshold(model, pre_nms_score_threshold)
    module = ServingModule(model, params, params.task.model.input_size[:2])
    return Predictor.from_function(module.serve_images, label_map,
                                   score_threshold=score_threshold, owner=module,
                                   box_masks_fn=module.serve_box_masks)


def load_detector(run, checkpoint=None, score_threshold: float = 0.0,
                  pre_nms_score_threshold: float | None = None):
    """In-memory detector for evaluation: ``__call__(uint8 [H, W, 3]) -> Detections`` and
    ``predict_batch(list) -> list[Detections]``, the same outputs as the export (boxes in
    input pixels, bool masks at image size). ``score_threshold`` filters the Detections;
    the model's own pre-NMS threshold is the run config's unless
    ``pre_nms_score_threshold`` is given."""
    model, _ = _build_and_restore(run, checkpoint)
    return detector_from_model(model, run.experiment, run.label_map, score_threshold,
                               pre_nms_score_threshold)

