"""``Predictor``: one callable over every model this project runs.

It recognizes by itself what ``path`` is:

- ``export``: our export folder (``export.py``): ``DIR/saved_model`` signature
  ``image_tensor`` gives boxes in input pixels and 0/1 masks at image size; the Predictor
  calls its ``image_tensor_box_masks`` (the same outputs with the masks still
  box-relative; exports without it use ``image_tensor``) and pastes only the kept rows.
- ``odapi_saved_model``: a SavedModel from the TF Object Detection API's
  ``exporter_main_v2.py`` (the folder holding ``saved_model.pb``, or the export folder
  holding ``saved_model/``): ``serving_default`` takes ``input_tensor`` uint8 [1, H, W, 3]
  and returns ``detection_boxes`` (normalized), float ``detection_classes``, and, for mask
  models, box-relative ``detection_masks`` [B, N, mh, mw].
- ``frozen_graph``: a TF1 frozen GraphDef ``.pb`` (or a folder holding
  ``frozen_inference_graph.pb``), such as the OD API model zoo's
  ``mask_rcnn_inception_v2_coco``: ``image_tensor:0`` → ``detection_boxes:0``,
  ``detection_scores:0``, ``detection_classes:0``, ``num_detections:0`` and optionally
  ``detection_masks:0``; our own ``DIR/frozen_graph.pb`` is one too.

A folder holding both ``frozen_inference_graph.pb`` and ``saved_model/`` (the TF1 model
zoo's tarballs ship both) loads the frozen graph: it is what TF1 OD API tutorials run, and
a TF1-exported ``saved_model/`` loads in TF2 only through the v1 compatibility loader, with
the older ``inputs`` signature. Pass ``DIR/saved_model`` to load that one instead. Our own
export folder (``saved_model/`` + ``frozen_graph.pb``) loads its SavedModel.

Box-relative masks are pasted as the OD API's reframing does, thresholded at > 0.5
(``core.masks.paste_box_masks``: the same pixels as ``crop_and_resize``, computed over
each box's window only), after the score threshold and class filter, so only the kept
rows are pasted (models return up to 100 rows, mostly low scores). Whatever the model,
the result is ``core.detections.Detections``: ``boxes_yxyx_px`` float32 (ymin, xmin, ymax,
xmax) in pixels of the image passed in, bool masks [N, H, W] at that size (None for a box-only
model), label-map ids and names. Masks from an export without ``image_tensor_box_masks``
are read-only views of the SavedModel's output: ``.copy()`` them before changing them in
place.

The label map comes from ``label_map=`` (a path or a LabelMap), else from a
``label_map.pbtxt`` next to the model; ids it lacks are named ``class_<id>``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from maskrcnn_toolkit.core.boxes import denormalize_yxyx, normalize_yxyx
from maskrcnn_toolkit.core.detections import Detections
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.label_map import LabelMap, read_label_map
from maskrcnn_toolkit.core.masks import paste_box_masks
from maskrcnn_toolkit.inference.images import check_image

OD_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
EXPECTED = ("an export folder from export.py (saved_model/ + metadata.json), a SavedModel "
            "folder (saved_model.pb, e.g. from the OD API's exporter_main_v2.py), or a TF1 "
            "frozen graph .pb (or a folder holding frozen_inference_graph.pb)")


def _tf():
    import tensorflow as tf  # imported lazily: `import inference` stays cheap
    return tf


# --------------------------------------------------------------------------- backends
# Each backend maps ``(batch, score_threshold)``, batch uint8 [B, H, W, 3] (one size), to
# B tuples (boxes_yxyx_px float32 [n, 4], scores float32 [n], class ids int32 [n], masks), masks
# being 0/1 uint8 [n, H, W] (already at image size), a _BoxMasks (pasted later, kept rows
# only) or None (a box-only model). ``score_threshold`` is a hint: a backend may leave out
# rows scoring below it (our export does, so it pastes no mask it would throw away); the
# Predictor filters the rows either way.

class _BoxMasks:
    """Box-relative masks not yet pasted: ``box_masks`` float32 [n, mh, mw] probabilities
    covering ``boxes_yxyx_norm`` float32 [n, 4] (ymin, xmin, ymax, xmax) normalized by image
    size."""

    def __init__(self, box_masks: np.ndarray, boxes_yxyx_norm: np.ndarray):
        self.box_masks, self.boxes_yxyx_norm = box_masks, boxes_yxyx_norm

    def paste(self, rows: np.ndarray, height: int, width: int) -> np.ndarray:
        """bool [len(rows), height, width]: the given rows only, pasted and > 0.5."""
        return paste_box_masks(self.box_masks[rows], self.boxes_yxyx_norm[rows], height, width)


class _ExportBackend:
    """Our SavedModel (or the in-memory serving function).

    ``box_masks_fn`` (the ``image_tensor_box_masks`` signature; exports written before it
    existed lack it) returns the masks box-relative, so only the rows the Predictor keeps
    get pasted, in numpy: at 640x480, the in-graph paste of all 100 rows and its 30 MB
    output cost half the network's time (docs/DESIGN_NOTES.md, Export and inference).
    Otherwise ``fn`` (``image_tensor``).
    """

    def __init__(self, fn: Callable, max_batch: int | None = None,
                 box_masks_fn: Callable | None = None):
        self.fn, self.max_batch, self.box_masks_fn = fn, max_batch, box_masks_fn

    def __call__(self, batch, score_threshold: float = 0.0):
        tf = _tf()
        h, w = batch.shape[1:3]
        out = (self.box_masks_fn or self.fn)(images=tf.constant(batch))
        # np.asarray shares the output tensors' buffers; .numpy() would copy them (pasted
        # masks are [B, N, H, W]: 30 MB for 100 detections at 640x480).
        out = {k: np.asarray(v) for k, v in out.items()}
        res = []
        for b in range(len(batch)):
            n = int(out["num_detections"][b])
            boxes_yxyx_px, masks = out["detection_boxes"][b, :n], out["detection_masks"][b, :n]
            if self.box_masks_fn is not None:
                # boxes / size in float32: the normalized boxes the in-graph paste uses.
                masks = _BoxMasks(masks, normalize_yxyx(boxes_yxyx_px, h, w))
            res.append((boxes_yxyx_px, out["detection_scores"][b, :n],
                        out["detection_classes"][b, :n], masks))
        return res


def _od_api_to_results(out: dict, h: int, w: int) -> list:
    """OD API outputs (numpy, normalized boxes, float classes, box-relative masks) → the
    backend tuples; masks stay box-relative (:class:`_BoxMasks`) until rows are chosen."""
    res = []
    for b in range(out["detection_boxes"].shape[0]):
        n = int(out["num_detections"][b])
        boxes_yxyx_norm = out["detection_boxes"][b, :n].astype(np.float32)
        masks = None
        if "detection_masks" in out:
            masks = _BoxMasks(np.asarray(out["detection_masks"][b, :n], np.float32),
                              boxes_yxyx_norm)
        res.append((denormalize_yxyx(boxes_yxyx_norm, h, w), out["detection_scores"][b, :n],
                    np.rint(out["detection_classes"][b, :n]).astype(np.int32), masks))
    return res


class _OdApiSavedModelBackend:
    def __init__(self, fn, input_name: str, max_batch: int | None):
        self.fn, self.input_name, self.max_batch = fn, input_name, max_batch

    def __call__(self, batch, score_threshold: float = 0.0):
        tf = _tf()
        out = self.fn(**{self.input_name: tf.constant(batch)})
        out = {k: v.numpy() for k, v in out.items() if k in OD_OUTPUTS + ("detection_masks",)}
        return _od_api_to_results(out, batch.shape[1], batch.shape[2])


class _FrozenGraphBackend:
    """A TF1 GraphDef run through ``tf.compat.v1.Session`` (the OD API's own TF1 way)."""

    def __init__(self, path: str):
        tf = _tf()
        gd = tf.compat.v1.GraphDef()
        try:
            with open(path, "rb") as f:
                gd.ParseFromString(f.read())
        except OSError as e:
            raise UserError(f"cannot read frozen graph {path!r}: {e.strerror}") from None
        except Exception as e:  # protobuf DecodeError: not a GraphDef
            raise UserError(f"{path!r} is not a TensorFlow GraphDef ({e}); expected "
                            f"{EXPECTED}") from None
        nodes = {n.name: n for n in gd.node}
        missing = [t for t in ("image_tensor",) + OD_OUTPUTS if t not in nodes]
        if missing:
            consumed = {i.split(":")[0].lstrip("^") for n in gd.node for i in n.input}
            inputs = [n.name for n in gd.node if n.op == "Placeholder"]
            outputs = [n.name for n in gd.node if n.name not in consumed and n.op != "NoOp"]
            raise UserError(
                f"frozen graph {path!r} lacks {', '.join(t + ':0' for t in missing)}; "
                f"expected the TF Object Detection API tensors image_tensor:0 -> "
                f"{', '.join(t + ':0' for t in OD_OUTPUTS)} (detection_masks:0 optional). "
                f"It has inputs {inputs[:10]} and outputs {outputs[:20]}")
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.import_graph_def(gd, name="")
        self.fetch = {k: self.graph.get_tensor_by_name(k + ":0") for k in OD_OUTPUTS}
        if "detection_masks" in nodes:
            self.fetch["detection_masks"] = self.graph.get_tensor_by_name("detection_masks:0")
        self.input = self.graph.get_tensor_by_name("image_tensor:0")
        dim0 = self.input.shape[0] if self.input.shape.rank else None
        self.max_batch = 1 if dim0 == 1 else None
        self.session = tf.compat.v1.Session(graph=self.graph)

    def __call__(self, batch, score_threshold: float = 0.0):
        out = self.session.run(self.fetch, feed_dict={self.input: batch})
        return _od_api_to_results(out, batch.shape[1], batch.shape[2])


# --------------------------------------------------------------------------- loading

def _is_class_id(c) -> bool:
    """An int id, or a string of digits (as CLIs pass them)."""
    return (isinstance(c, (int, np.integer)) and not isinstance(c, bool)) or (
        isinstance(c, str) and c.isdigit())


def _find_model(path: Path) -> tuple[str, Path]:
    """(kind, location): kind is 'saved_model' or 'frozen_graph'.

    In a folder, in this order: ``saved_model.pb`` (a SavedModel folder), then
    ``frozen_inference_graph.pb`` (a TF1 zoo folder: its frozen graph wins over the
    ``saved_model/`` beside it, see the module docstring), then ``saved_model/`` (our
    export, exporter_main_v2.py's output), then ``frozen_graph.pb``.
    """
    if not path.exists():
        raise UserError(f"model path {str(path)!r} does not exist; expected {EXPECTED}")
    if path.is_file():
        if path.name == "saved_model.pb":
            return "saved_model", path.parent
        if path.suffix == ".pb":
            return "frozen_graph", path
        raise UserError(f"model file {str(path)!r} is not a .pb; expected {EXPECTED}")
    if (path / "saved_model.pb").is_file():
        return "saved_model", path
    if (path / "frozen_inference_graph.pb").is_file():
        return "frozen_graph", path / "frozen_inference_graph.pb"
    if (path / "saved_model" / "saved_model.pb").is_file():
        return "saved_model", path / "saved_model"
    if (path / "frozen_graph.pb").is_file():
        return "frozen_graph", path / "frozen_graph.pb"
    found = sorted(p.name for p in path.iterdir())[:10]
    raise UserError(f"{str(path)!r} is not a model folder (it holds {found or 'nothing'}); "
                    f"expected {EXPECTED}")


def _label_map_near(location: Path) -> LabelMap | None:
    for folder in (location if location.is_dir() else location.parent,
                   location.parent if location.is_dir() else location.parent.parent):
        if (folder / "label_map.pbtxt").is_file():
            return read_label_map(folder / "label_map.pbtxt")
    return None


def model_label_map(path: str | os.PathLike, label_map: LabelMap | str | os.PathLike
                    | None = None) -> LabelMap:
    """The label map ``Predictor(path, label_map=label_map)`` uses, read without loading the
    model (no TensorFlow): ``label_map`` (a LabelMap or a path), else the
    ``label_map.pbtxt`` beside the model, else an empty LabelMap. ``annotate.py`` checks
    ``--classes`` and ``--gt`` with it before the model's slow load.

    Raises UserError when ``path`` is not a model this module loads (see :func:`_find_model`)
    or the label map cannot be read.
    """
    return _label_map_for(_find_model(Path(path))[1], label_map)


def _label_map_for(location: Path, label_map: LabelMap | str | os.PathLike | None
                   ) -> LabelMap:
    if isinstance(label_map, LabelMap):
        return label_map
    if label_map is not None:
        return read_label_map(label_map)
    return _label_map_near(location) or LabelMap({})


def check_classes(classes: Sequence[int | str] | None, label_map: LabelMap,
                  model: str = "the model") -> None:
    """UserError unless every entry of ``classes`` (ids, digit strings or names) can match a
    detection: in ``label_map`` (ids or names), or only ids when the label map is empty.
    ``model`` names the model in the message."""
    if classes is None:
        return
    if not len(label_map):
        names = [c for c in classes if not _is_class_id(c)]
        if names:
            raise UserError(
                f"classes {names} are class names, but {model} has no label map (none "
                f"given and no label_map.pbtxt beside it), so no detection could match "
                f"them; pass a label map with those names (label_map=, annotate.py "
                f"--label-map) or give class ids instead, which work without one")
        return
    known = {str(i) for i in label_map.ids} | set(label_map.names)
    unknown = [c for c in classes if str(c) not in known]
    if unknown:
        valid = ", ".join(f"{n!r} ({i})" for i, n in label_map.names_by_id.items())
        raise UserError(f"classes {unknown} are not in the label map of {model}; use names "
                        f"or ids from it: {valid}")


def _load_saved_model(location: Path):
    tf = _tf()
    try:
        loaded = tf.saved_model.load(str(location))
    except Exception as e:  # a damaged SavedModel raises many different TF errors
        raise UserError(f"cannot load SavedModel {str(location)!r} "
                        f"({e.__class__.__name__}: {str(e).splitlines()[0][:200]}); "
                        f"expected {EXPECTED}") from None
    sigs = dict(loaded.signatures)
    if "serving_default" not in sigs:
        raise UserError(f"SavedModel {str(location)!r} has no 'serving_default' signature "
                        f"(it has {sorted(sigs)}); expected one that takes uint8 images")
    fn = sigs["serving_default"]
    inputs = fn.structured_input_signature[1]
    outputs = fn.structured_outputs
    missing = [k for k in OD_OUTPUTS if k not in outputs]
    if missing or len(inputs) != 1:
        raise UserError(
            f"SavedModel {str(location)!r} serving_default takes {sorted(inputs)} and returns "
            f"{sorted(outputs)}; expected one uint8 image input and "
            f"{', '.join(OD_OUTPUTS)} (detection_masks optional), as export.py and the "
            f"TF OD API's exporter_main_v2.py write")
    (name, spec), = inputs.items()
    if spec.dtype != tf.uint8:
        raise UserError(
            f"SavedModel {str(location)!r} takes {name!r} as {spec.dtype.name}; expected "
            f"uint8 images (re-export an OD API model with --input_type image_tensor)")
    max_batch = 1 if spec.shape.rank and spec.shape[0] == 1 else None
    ours = (name == "images" and "encoded_image" in sigs
            and outputs["detection_classes"].dtype == tf.int32)
    backend = (_ExportBackend(fn, max_batch, sigs.get("image_tensor_box_masks")) if ours
               else _OdApiSavedModelBackend(fn, name, max_batch))
    backend.loaded = loaded  # keep the restored variables alive with the function
    return ("export" if ours else "odapi_saved_model"), backend


class Predictor:
    """Run a detection model on uint8 RGB images; always returns ``Detections``.

    Args:
      path: an export folder, a SavedModel folder, a frozen graph .pb or a folder with
        ``frozen_inference_graph.pb`` (see the module docstring).
      label_map: a LabelMap or a label-map path; default: ``label_map.pbtxt`` beside the
        model, else names ``class_<id>``.
      score_threshold: keep detections with score >= this.
      classes: keep only these class ids or names (None keeps all).

    Attributes: ``kind`` ('export', 'odapi_saved_model', 'frozen_graph' or 'function'),
    ``label_map``, ``score_threshold``, ``classes``, ``path``.
    """

    def __init__(self, path: str | os.PathLike, label_map: LabelMap | str | os.PathLike
                 | None = None, score_threshold: float = 0.5,
                 classes: Iterable[int | str] | None = None):
        self.path = Path(path)
        kind, location = _find_model(self.path)
        label_map = _label_map_for(location, label_map)  # a bad one fails before the load
        if kind == "frozen_graph":
            self.kind, self._backend = "frozen_graph", _FrozenGraphBackend(str(location))
        else:
            self.kind, self._backend = _load_saved_model(location)
        self._setup(label_map, score_threshold, classes)

    @classmethod
    def from_function(cls, fn: Callable, label_map: LabelMap | None,
                      score_threshold: float = 0.0,
                      classes: Iterable[int | str] | None = None,
                      owner=None, box_masks_fn: Callable | None = None) -> "Predictor":
        """Wrap a tf.function with the export's ``image_tensor`` inputs and outputs
        (``modeling.exporting.load_detector`` uses this for the in-memory model).
        ``owner``: the object ``fn`` is a method of, kept alive here (tf.function methods
        hold their instance only weakly). ``box_masks_fn``: optional, with the
        ``image_tensor_box_masks`` signature's outputs (masks box-relative)."""
        self = cls.__new__(cls)
        self.path, self.kind = None, "function"
        self._backend = _ExportBackend(fn, box_masks_fn=box_masks_fn)
        self._backend.owner = owner
        self._setup(label_map, score_threshold, classes)
        return self

    def _setup(self, label_map, score_threshold, classes):
        if label_map is not None and not isinstance(label_map, LabelMap):
            label_map = read_label_map(label_map)
        self.label_map = label_map if label_map is not None else LabelMap({})
        self.score_threshold = float(score_threshold)
        self.classes = None if classes is None else list(classes)
        check_classes(self.classes, self.label_map,
                      repr(str(self.path)) if self.path is not None else "the model")

    def __call__(self, image: np.ndarray) -> Detections:
        """image: uint8 [H, W, 3] RGB → Detections in that image's pixels."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """A list of uint8 [H, W, 3] RGB images → one Detections each, in order.

        Images of the same size run together (up to the model's batch limit; OD API
        SavedModels take one at a time); different sizes run separately.
        """
        images = [check_image(im, f"image {i}") for i, im in enumerate(images)]
        results: list[Detections | None] = [None] * len(images)
        groups: dict[tuple, list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(im.shape, []).append(i)
        step = self._backend.max_batch or max(1, len(images))
        for idx in groups.values():
            for s in range(0, len(idx), step):
                chunk = idx[s:s + step]
                batch = np.stack([images[i] for i in chunk])
                for i, raw in zip(chunk, self._backend(batch, self.score_threshold)):
                    results[i] = self._to_detections(raw, images[i].shape[:2])
        return results

    def _to_detections(self, raw, size) -> Detections:
        """Filter first (score threshold, classes), then paste box-relative masks of the
        kept rows only: the result equals pasting every row and ``Detections.filter``."""
        boxes_yxyx_px, scores, class_ids, masks = raw
        names = [self.label_map.name(c) for c in class_ids]
        rows = np.flatnonzero(self._keep(scores, class_ids, names))
        if isinstance(masks, _BoxMasks):
            masks = masks.paste(rows, *size)
        elif masks is not None:
            if masks.dtype == np.uint8:
                masks = masks.view(bool)  # 0/1 by the export's contract: no copy
            # Kept rows are usually a prefix (scores come sorted): a view, not a copy.
            prefix = len(rows) == 0 or rows[-1] == len(rows) - 1
            masks = masks[:len(rows)] if prefix else masks[rows]
        return Detections(boxes_yxyx_px[rows], scores[rows], class_ids[rows],
                          [names[i] for i in rows], size, masks)

    def _keep(self, scores: np.ndarray, class_ids: np.ndarray, names: list[str]) -> np.ndarray:
        """bool [n]: ``Detections.filter``'s rule (score >= threshold; id or name in
        ``classes``), read at call time so changing the attributes takes effect."""
        keep = np.asarray(scores) >= self.score_threshold
        if self.classes is not None:
            wanted = {str(c) for c in self.classes}
            keep &= np.array([str(int(i)) in wanted or n in wanted
                              for i, n in zip(class_ids, names)], bool).reshape(-1)
        return keep

    def close(self):
        if isinstance(self._backend, _FrozenGraphBackend):
            self._backend.session.close()

    def __repr__(self):
        return (f"Predictor({str(self.path)!r}, kind={self.kind!r}, "
                f"{len(self.label_map)} classes, score_threshold={self.score_threshold})")
