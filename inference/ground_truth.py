"""Annotated images in a COCO ground truth's ids (``annotate.py --gt FILE``), so that
``evaluate.py --gt FILE --detections OUT/detections.json`` scores them as they are.

:func:`match_ground_truth` reads the ground truth (e.g. the converter's
``DATA/val_annotations.json``) and, before a model loads:

- matches each input image to a ground-truth image by **file name** (the last part of the
  ground truth's ``file_name``; when the ground truth has several images of that name in
  different folders, the one whose folders end the input's path). Inputs the ground truth
  does not list are **skipped** (a photos folder holds the training images too); ground
  truth images no input matched are **reported**: evaluate.py counts their objects as
  missed. No input in the ground truth at all is an error.
- matches classes **by name**: the label map's classes (those ``--classes`` keeps, when
  given) and the ground truth's categories must name the same classes, else an error lists
  the difference. Detections then carry the ground truth's category ids.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.json_files import read_json
from maskrcnn_toolkit.core.label_map import LabelMap

_EXAMPLES = 5


@dataclass
class GroundTruthMatch:
    """What :func:`match_ground_truth` found.

    path: the ground-truth file.
    image_ids: input image path -> ground-truth image id, for the inputs the ground truth
      lists, in input order.
    sizes: input image path -> (height, width) the ground truth gives it (None when absent).
    category_ids: label-map class id -> ground-truth category id of the same name.
    categories: the ground truth's ``{"id", "name"}`` of those classes, by id.
    not_in_gt: inputs the ground truth does not list (not annotated).
    not_given: ground-truth ``file_name`` values no input matched.
    """

    path: str
    image_ids: dict[Path, int]
    sizes: dict[Path, tuple[int, int] | None]
    category_ids: dict[int, int]
    categories: list[dict]
    not_in_gt: list[Path]
    not_given: list[str]

    @property
    def paths(self) -> list[Path]:
        """The inputs to annotate: those the ground truth lists, in input order."""
        return list(self.image_ids)

    def warnings(self) -> list[str]:
        """What the user should know before scoring: skipped inputs, missing images."""
        out = []
        if self.not_in_gt:
            out.append(f"{len(self.not_in_gt)} input images are not in the ground truth "
                       f"{self.path!r} ({_examples([p.name for p in self.not_in_gt])}); they "
                       f"are skipped (not annotated): --gt annotates the ground truth's "
                       f"images only")
        if self.not_given:
            out.append(f"{len(self.not_given)} of the ground truth's images are not among the "
                       f"inputs ({_examples(self.not_given)}); evaluate.py scores every image "
                       f"of the ground truth, so their objects will count as missed; give "
                       f"the folder that holds all of them for a fair score")
        return out


def match_ground_truth(gt_path: str | os.PathLike, paths: Sequence[Path],
                       label_map: LabelMap,
                       classes: Sequence[int | str] | None = None) -> GroundTruthMatch:
    """Match image ``paths`` and ``label_map``'s classes (those in ``classes`` when given:
    ids or names) to the COCO ground truth ``gt_path``; see the module docstring.

    Raises UserError naming the file and the fix: not a COCO ground truth, no input in it,
    an ambiguous file name, or classes that differ by name.
    """
    gt_path = os.fspath(gt_path)
    gt = read_json(gt_path, "a COCO ground-truth JSON object with 'images' and 'categories' "
                            "lists (e.g. DATA/val_annotations.json from dataset_tools convert)")
    images, categories = _check(gt, gt_path)
    category_ids, cats = _match_categories(categories, label_map, classes, gt_path)

    by_name: dict[str, list[dict]] = {}
    for im in images:
        by_name.setdefault(_parts(im["file_name"])[-1], []).append(im)
    image_ids, sizes, not_in_gt, used = {}, {}, [], set()
    for p in paths:
        im = _pick(by_name.get(p.name, []), Path(p), gt_path)
        if im is None:
            not_in_gt.append(p)
            continue
        image_ids[p] = im["id"]
        h, w = im.get("height"), im.get("width")
        sizes[p] = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        used.add(id(im))
    if not image_ids:
        raise UserError(
            f"none of the {len(paths)} input images is in the ground truth {gt_path!r} "
            f"(matched by file name: it lists {_examples([im['file_name'] for im in images])}; "
            f"the inputs are {_examples([p.name for p in paths])}); give the images the "
            f"ground truth was made from")
    not_given = [im["file_name"] for im in images if id(im) not in used]
    return GroundTruthMatch(gt_path, image_ids, sizes, category_ids, cats, not_in_gt,
                            not_given)


def _check(gt, path: str) -> tuple[list[dict], list[dict]]:
    """The ground truth's images and categories, after checking the fields used here."""
    if not isinstance(gt, dict) or not isinstance(gt.get("images"), list) \
            or not isinstance(gt.get("categories"), list):
        raise UserError(f"{path}: not a COCO ground truth (expected a JSON object with "
                        f"'images' and 'categories' lists, as dataset_tools convert writes "
                        f"in DATA/val_annotations.json)")
    for im in gt["images"]:
        if not (isinstance(im, dict) and isinstance(im.get("id"), int)
                and isinstance(im.get("file_name"), str) and im["file_name"]):
            raise UserError(f"{path}: image entry {_short(im)} needs an integer 'id' and a "
                            f"'file_name'")
    for c in gt["categories"]:
        if not (isinstance(c, dict) and isinstance(c.get("id"), int)
                and isinstance(c.get("name"), str)):
            raise UserError(f"{path}: category entry {_short(c)} needs an integer 'id' and "
                            f"a 'name'")
    return gt["images"], gt["categories"]


def _match_categories(categories: list[dict], label_map: LabelMap,
                      classes: Sequence[int | str] | None, path: str
                      ) -> tuple[dict[int, int], list[dict]]:
    """(label-map id -> ground-truth id, the ground truth's {id, name} of them)."""
    gt_ids: dict[str, int] = {}
    for c in categories:
        if c["name"] in gt_ids:
            raise UserError(f"{path}: categories {gt_ids[c['name']]} and {c['id']} are both "
                            f"named {c['name']!r}; --gt matches classes by name, so each "
                            f"name must be one category")
        gt_ids[c["name"]] = c["id"]
    if not len(label_map):
        raise UserError("--gt matches the model's classes to the ground truth's categories "
                        "by name, but the model has no label map (none given and no "
                        "label_map.pbtxt beside it); pass --label-map (e.g. "
                        "DATA/label_map.pbtxt from dataset_tools convert)")
    wanted = None if classes is None else {str(c) for c in classes}
    names = [n for i, n in label_map.names_by_id.items()
             if wanted is None or str(i) in wanted or n in wanted]
    only_model = [n for n in names if n not in gt_ids]
    only_gt = [n for n in gt_ids if n not in names]
    if only_model or only_gt:
        if classes is not None and set(label_map.names) == set(gt_ids):
            raise UserError(
                f"--classes keeps {names}, but the ground truth {path!r} also has "
                f"{only_gt}: evaluate.py would score those as never detected; drop "
                f"--classes to score against this ground truth")
        raise UserError(
            f"the label map's classes and the categories of the ground truth {path!r} "
            f"differ: only in the label map: {only_model or 'none'}; only in the ground "
            f"truth: {only_gt or 'none'}. --gt matches classes by name, so both must name "
            f"the same classes: pass the label map the data was converted with "
            f"(--label-map DATA/label_map.pbtxt)")
    ids = label_map.ids_by_name
    category_ids = {ids[n]: gt_ids[n] for n in names}
    cats = sorted(({"id": gt_ids[n], "name": n} for n in names), key=lambda c: c["id"])
    return category_ids, cats


def _pick(candidates: list[dict], path: Path, gt_path: str) -> dict | None:
    """The ground-truth image of ``path`` among those with its file name: the only one, or
    the one whose ``file_name`` folders end ``path``'s folders; None when there is none."""
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    parts = Path(os.path.abspath(path)).parts

    def shared(im: dict) -> int:  # trailing path parts in common
        gt_parts = _parts(im["file_name"])
        n = 0
        while n < min(len(parts), len(gt_parts)) and parts[-1 - n] == gt_parts[-1 - n]:
            n += 1
        return n
    scores = sorted(((shared(im), k) for k, im in enumerate(candidates)), reverse=True)
    if scores[0][0] > scores[1][0]:
        return candidates[scores[0][1]]
    raise UserError(f"the ground truth {gt_path!r} lists several images named {path.name!r} "
                    f"({_examples([im['file_name'] for im in candidates])}) and the input "
                    f"{str(path)!r} matches no one of them by its folders; keep the input "
                    f"images in folders named as in the ground truth's file_name")


def _parts(file_name: str) -> tuple[str, ...]:
    """A ``file_name``'s path parts; COCO files written on Windows use backslashes."""
    return PurePosixPath(file_name.replace("\\", "/")).parts


def _short(v, n: int = 80) -> str:
    s = repr(v)
    return s if len(s) <= n else s[:n - 3] + "..."


def _examples(items: list, n: int = _EXAMPLES) -> str:
    shown = ", ".join(str(x) for x in items[:n])
    return shown + (f", ... ({len(items) - n} more)" if len(items) > n else "")
