"""``convert``: annotation files -> validated, sharded TFRecords + label map + COCO GT + report.

Pipeline (memory stays flat as the dataset grows):
1. The reader parses the annotations into light :class:`ImageRecord` s (no pixels).
2. Split (split.py), label map (given, or sorted names over train + val -> ids 1..N), image
   ids (1.. in output order, unique across train and val), shard counts (~100 MB each).
3. Each record is loaded, validated, its masks rasterized and PNG-encoded and its tf.Example
   serialized by :func:`validate.process_record`, one image at a time, in ``workers``
   processes (ordered, with a bounded window of pending work), and written in order.
4. Everything is written into a temporary folder beside OUT, renamed onto OUT only when
   the whole conversion succeeded: Ctrl-C, a crash or a ``--strict`` refusal leaves OUT as
   it was and no temporary behind. When every image is refused, nothing is written to OUT
   either; the report goes beside it (``OUT.report.json``), so the reasons are not lost.
TensorFlow is never imported (records.encode_example and writer.frame_record write the
tf.Example and TFRecord formats themselves): that import alone is ~5 s of start-up.
"""
from __future__ import annotations

import itertools
import json
import math
import multiprocessing as mp
import os
import re
import signal
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from maskrcnn_toolkit.core.atomic import atomic_dir, atomic_write, check_replaceable
from maskrcnn_toolkit.core.dataset_folder import DatasetFolder, is_dataset_file
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.label_map import LabelMap, read_label_map
from maskrcnn_toolkit.dataset_tools import readers
from maskrcnn_toolkit.dataset_tools.coco_gt import CocoGtWriter
from maskrcnn_toolkit.dataset_tools.label_checks import (
    default_label_findings,
    default_labelled,
    similar_labels,
)
from maskrcnn_toolkit.dataset_tools.readers import DEFAULT_LABEL, ReaderOptions
from maskrcnn_toolkit.dataset_tools.readers.sniff import WrongFormat
from maskrcnn_toolkit.dataset_tools.records import ImageRecord
from maskrcnn_toolkit.dataset_tools.split import split_records
from maskrcnn_toolkit.dataset_tools.validate import (
    FIXED,
    IGNORED,
    REFUSED,
    SEVERITIES,
    WARNING,
    Finding,
    ImageResult,
    ValidateOptions,
    process_record,
    reader_findings,
)
from maskrcnn_toolkit.dataset_tools.writer import ShardedWriter, auto_num_shards, crc32c

DEFAULT_VAL_FRACTION = 0.1
_BATCH = 4          # records per task sent to a worker (amortizes IPC)
_WINDOW_PER_WORKER = 4  # pending tasks per worker: bounds memory held by finished results


@dataclass
class ConvertSummary:
    """What a conversion wrote. Counts are images / instances actually written."""

    out: Path
    train_images: int
    val_images: int
    instances: int
    images_refused: int
    instances_refused: int
    fixed: int
    warnings: int
    seconds: float
    train_shards: int
    val_shards: int
    label_map: LabelMap
    findings: list[Finding] = field(default_factory=list)
    ignored: int = 0  # regions whose label names no class (__ignore__)
    default_labelled: int = 0  # instances read that got their class from --default-label
    instances_read: int = 0  # every instance the reader found, before validation
    default_label: str = ""

    @property
    def images(self) -> int:
        return self.train_images + self.val_images

    def line(self) -> str:
        ignored = f", {self.ignored} ignored" if self.ignored else ""
        named = ""
        if self.default_labelled:
            n, total = self.default_labelled, self.instances_read
            named = (f"; {'all ' + str(n) if n == total else f'{n} of {total}'} regions named "
                     f"{self.default_label!r} by --default-label")
        return (f"converted {self.images} images ({self.train_images} train, "
                f"{self.val_images} val), {self.instances} instances; refused "
                f"{self.images_refused} images and {self.instances_refused} instances; "
                f"{self.fixed} fixes, {self.warnings} warnings{ignored}{named}; "
                f"{self.seconds:.1f} s -> {self.out}")


# ----------------------------------------------------------------------------- output folder
def _is_ours(name: str) -> bool:
    """Names the converter writes into OUT: with --overwrite, a folder holding anything else
    is refused (core.atomic.check_replaceable), because the whole folder is replaced (that
    is what removes stale shards of an earlier run with another shard count)."""
    return is_dataset_file(name)


# ----------------------------------------------------------------------------- workers
_OPTS: dict[str, ValidateOptions] = {}


def _init_worker(ids_by_name: dict[str, int]) -> None:
    # The parent handles Ctrl-C and terminates the pool; workers must not print tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The CLI turns SIGTERM into KeyboardInterrupt for its own cleanup; pool.terminate()
    # sends SIGTERM to workers, which should simply end.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _set_options(ids_by_name)


def _set_options(ids_by_name: dict[str, int]) -> None:
    """What :func:`_work` validates against, per split (in each worker, or in-process)."""
    for split in ("train", "val"):
        _OPTS[split] = ValidateOptions(ids_by_name, split)


def _work(batch: list[tuple[ImageRecord, int, str]]) -> list[ImageResult]:
    return [process_record(rec, image_id, _OPTS[split]) for rec, image_id, split in batch]


def _batched(items: Iterable, n: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, n)):
        yield chunk


def _ordered_results(tasks: list, workers: int, ids_by_name: dict[str, int]
                     ) -> Iterator[ImageResult]:
    """Results in task order. With workers > 1, at most ``workers * _WINDOW_PER_WORKER``
    batches are in flight, so finished-but-unwritten examples never pile up."""
    if workers <= 1:
        _set_options(ids_by_name)
        for t in tasks:
            yield from _work([t])
        return
    # fork: children inherit the imported modules and the CRC tables, built here once.
    crc32c(b"")
    pool = mp.get_context("fork").Pool(workers, initializer=_init_worker,
                                       initargs=(ids_by_name,))
    try:
        batches = _batched(tasks, _BATCH)
        pending = deque(pool.apply_async(_work, (b,))
                        for b in itertools.islice(batches, workers * _WINDOW_PER_WORKER))
        while pending:
            done = pending.popleft().get()
            nxt = next(batches, None)
            if nxt is not None:
                pending.append(pool.apply_async(_work, (nxt,)))
            yield from done
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def default_workers(num_images: int) -> int:
    """One worker per core, at most 8; in-process below 64 images, where starting a pool
    costs more than it saves. The parent only writes shards (cheap), so it does not need a
    core of its own: on a quiet 2-core machine, 600 images at 640x480 took 7.9 s with 2
    workers and 10.1 s in-process (an earlier measurement under heavy load said the
    opposite)."""
    if num_images < 64:
        return 1
    return max(1, min(8, os.cpu_count() or 1))


# ----------------------------------------------------------------------------- helpers
def _estimated_bytes(records: list[ImageRecord]) -> int:
    total = 0
    for r in records:
        try:
            if r.image_path:
                total += os.path.getsize(r.image_path)
            elif r.embedded:
                total += int(os.path.getsize(r.embedded[0]) * 0.75)  # base64 overhead
        except OSError:
            pass
    return total


def _read(fmt: str, src, options: ReaderOptions, what: str, out: Path) -> list[ImageRecord]:
    try:
        records = list(readers.read(fmt, src, options))
    except WrongFormat as e:  # the command it suggests, with the user's own OUT
        raise UserError(e.message(out)) from None
    if not records:
        raise UserError(f"{what} {str(src)!r} holds no images for format {fmt!r}; check the "
                        f"path and the format")
    return records


NO_LABELS = ("the annotations hold no labelled instances, so there is no class to train; "
             "check the annotation files (or pass --label-map FILE)")


def build_label_map(records: Iterable[ImageRecord], label_map_path=None) -> LabelMap | None:
    """The given label map, or the sorted names of every instance label -> ids 1..N; None
    when there is no label map and no instance."""
    if label_map_path is not None:
        return read_label_map(label_map_path)
    names = sorted({inst.label for r in records for inst in r.instances})
    return LabelMap.from_names(names) if names else None


_REASON_DETAILS = re.compile(r"'[^']*'|\"[^\"]*\"|\d+(?:\.\d+)?")


def _top_reasons(items: list[Finding], n: int = 4) -> str:
    """The most common reasons, names and numbers blanked out: "12x category id is not in
    'categories'; 3x ..."."""
    kinds = Counter(_REASON_DETAILS.sub("…", f.reason.split(";")[0]) for f in items)
    return "; ".join(f"{k}x {r}" for r, k in kinds.most_common(n))


def _print_findings(findings: list[Finding], report: Path, file=sys.stdout,
                    per_kind: int = 10) -> None:
    if not findings:
        print("validation: no problems found", file=file)
        return
    by = {k: [f for f in findings if f.severity == k] for k in SEVERITIES}
    print(f"validation: {len(by[REFUSED])} refused, {len(by[FIXED])} fixed, "
          f"{len(by[WARNING])} warnings"
          + (f", {len(by[IGNORED])} ignored" if by[IGNORED] else ""), file=file)
    for kind, items in by.items():
        if not items:
            continue
        print(f"  {kind}:", file=file)
        for f in items[:per_kind]:
            print(f"    {f}", file=file)
        if len(items) > per_kind:
            print(f"    ... {len(items) - per_kind} more; all {kind} by reason: "
                  + _top_reasons(items), file=file)
    print(f"  full list: {report}", file=file)


def _fail(message: str, findings: list[Finding], report: dict, out: Path, verbose: bool
          ) -> None:
    """Nothing can be written: print the findings, write the report beside OUT (OUT itself
    is left as it was), and raise the UserError that says where the report is."""
    path = DatasetFolder(out).failed_report
    with atomic_write(path, "w") as f:
        json.dump({**report, "error": message}, f, indent=1)
    if verbose:
        _print_findings(findings, path)
    refused = [f for f in findings if f.severity == REFUSED]
    top = f"; most common: {_top_reasons(refused, 3)}" if refused else ""
    raise UserError(f"{message}{top}. Nothing was written to {out}; every finding is listed "
                    f"above and in {path}")


# ----------------------------------------------------------------------------- convert
def convert(fmt: str, src, out, *, val_fraction: float | None = None, val=None, seed: int = 0,
            num_shards: int | None = None, label_map=None, images=None,
            via_attribute: str | None = None, default_label: str | None = None,
            box_as_polygon: bool = False, voc_image_set: str | None = None,
            overwrite: bool = False, strict: bool = False,
            workers: int | None = None, progress: bool = True, verbose: bool = True
            ) -> ConvertSummary:
    """Convert annotations in format ``fmt`` at ``src`` into the dataset folder ``out``.

    Args:
      fmt: one of readers.FORMATS.
      src / val: annotation source (file or folder, as the format has it); ``val`` takes the
        validation set from a second source instead of splitting ``src``.
      val_fraction: share of ``src`` images for validation (default 0.1; 0 = all train;
        not allowed together with ``val``).
      seed: split seed. num_shards: train shards (val gets a proportional count, >= 1);
        default ~100 MB per shard.
      label_map: path to a .pbtxt/.txt label map fixing ids and order.
      images, via_attribute, default_label, box_as_polygon, voc_image_set: reader options
        (readers.ReaderOptions); they apply to ``src`` and ``val`` alike. ``default_label``
        None names class-less regions ``object`` with a warning per file; given, the
        summary line says how many regions it named.
      overwrite: replace an existing output folder. strict: any refusal is an error and
        nothing is written. workers: processes (default: cores, 1 for tiny sets).
      progress: show a tqdm bar. verbose: print the findings summary and the summary line.
    Returns:
      A :class:`ConvertSummary`. Raises UserError for bad input (nothing written). When the
      input is readable but every image or instance is refused, the findings are printed
      and written to ``OUT.report.json`` beside OUT (DatasetFolder.failed_report) before the
      UserError, which names that file; a later successful run removes it.
    """
    t0 = time.perf_counter()
    out = Path(out)
    readers.get_reader(fmt)  # a bad format name fails first, listing the valid ones
    if val is not None and val_fraction:
        raise UserError("--val and --val-fraction both given; use --val SRC2 for a separate "
                        "validation source or --val-fraction F to split SRC, not both")
    if num_shards is not None and num_shards < 1:
        raise UserError(f"--num-shards {num_shards} must be at least 1")
    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers} must be at least 1")
    check_replaceable(out, overwrite, owned=_is_ours)  # before the (slow) reading

    default_given = default_label is not None
    default_label = default_label if default_given else DEFAULT_LABEL
    options = ReaderOptions(images_dir=Path(images) if images else None,
                            via_attribute=via_attribute, default_label=default_label,
                            box_as_polygon=box_as_polygon, voc_image_set=voc_image_set)
    records = _read(fmt, src, options, "annotation source", out)
    if val is not None:
        train_recs, val_recs = records, _read(fmt, val, options, "validation source (--val)",
                                              out)
    else:
        frac = DEFAULT_VAL_FRACTION if val_fraction is None else float(val_fraction)
        train_recs, val_recs = split_records(records, frac, seed)
    del records

    # What the labels alone show, before any image is opened (label_checks.py).
    findings: list[Finding] = similar_labels(itertools.chain(train_recs, val_recs))
    named_by_default, instances_read = default_labelled(itertools.chain(train_recs, val_recs))
    if not default_given:
        findings += default_label_findings(named_by_default, default_label)
    command = {"format": fmt, "src": str(src), "val": str(val) if val else None,
               "val_fraction": val_fraction, "seed": seed,
               "label_map": str(label_map) if label_map else None,
               "strict": strict, "box_as_polygon": box_as_polygon}

    def report(summary: dict, classes: dict) -> dict:
        return {"command": command, "summary": summary, "classes": classes,
                "findings": [f.to_json() for f in findings]}

    lm = build_label_map(itertools.chain(train_recs, val_recs), label_map)
    if lm is None:
        # No class at all: say why from what the readers refused or ignored.
        refused = 0
        for split, recs in (("train", train_recs), ("val", val_recs)):
            for rec in recs:
                found, n = reader_findings(rec, split)
                findings += found
                refused += n
        ignored = sum(f.severity == IGNORED for f in findings)
        if not refused and not ignored:
            raise UserError(NO_LABELS)
        n_images = len(train_recs) + len(val_recs)
        _fail(f"no instance is left to train on: {refused} instances refused and {ignored} "
              f"ignored in {n_images} images", findings,
              report({"images_read": n_images, "instances_refused": refused,
                      "ignored": ignored}, {}), out, verbose)
    ids_by_name = lm.ids_by_name

    def shards_for(recs, given):
        if given is not None:
            return max(1, min(given, len(recs)))
        return auto_num_shards(_estimated_bytes(recs), len(recs))

    n_train_shards = shards_for(train_recs, num_shards)
    n_val_shards = 0
    if val_recs:
        if num_shards is not None:
            ratio = _estimated_bytes(val_recs) / max(1, _estimated_bytes(train_recs))
            n_val_shards = max(1, min(len(val_recs), math.ceil(num_shards * ratio)))
        else:
            n_val_shards = shards_for(val_recs, None)

    tasks = [(r, i, "train") for i, r in enumerate(train_recs, start=1)]
    tasks += [(r, i, "val") for i, r in enumerate(val_recs, start=len(train_recs) + 1)]
    del train_recs, val_recs
    n_workers = workers or default_workers(len(tasks))

    written = Counter()
    refused_images = 0
    refused_instances = 0
    per_class = {name: Counter() for name in lm.names}
    digests: dict[str, str] = {}
    from tqdm import tqdm

    with atomic_dir(out, overwrite, owned=_is_ours) as tmp:
        folder = DatasetFolder(tmp)
        writers = {"train": ShardedWriter(tmp, "train", n_train_shards)}
        gts = {"train": CocoGtWriter(tmp, "train")}
        if n_val_shards:
            writers["val"] = ShardedWriter(tmp, "val", n_val_shards)
            gts["val"] = CocoGtWriter(tmp, "val")
        ann_id = 1
        bar = tqdm(total=len(tasks), unit="img", desc=f"convert {fmt}", disable=not progress,
                   file=sys.stderr, dynamic_ncols=True)
        results = _ordered_results(tasks, n_workers, ids_by_name)
        try:
            for (_, _, split), res in zip(tasks, results):
                bar.update(1)
                if not res.refused and res.digest in digests:
                    res.findings.append(Finding(
                        REFUSED, res.annotation_file, res.file_name, res.digest[:12],
                        f"duplicate image: same bytes as {digests[res.digest]!r}, written "
                        f"earlier", split))
                    res.instances_refused += len(res.annotations)
                    res.record = None
                findings.extend(res.findings)
                if strict:
                    bad = next((f for f in res.findings if f.severity == REFUSED), None)
                    if bad is not None:
                        raise UserError(f"{bad} (--strict: any refusal is an error; nothing "
                                        f"was written)")
                refused_instances += res.instances_refused
                if res.refused:
                    refused_images += 1
                    continue
                digests[res.digest] = res.file_name
                writers[split].write(res.record)
                ann_id = gts[split].add(res.image_id, res.file_name, res.width, res.height,
                                        res.annotations, ann_id)
                written[split] += 1
                for a in res.annotations:
                    per_class[lm.name(a["category_id"])][split] += 1
        finally:
            results.close()  # stops the worker pool now, even when unwinding an error
            bar.close()
            for w in writers.values():
                w.close()

        for name, counts in per_class.items():
            total = sum(counts.values())
            if total == 0:
                findings.append(Finding(WARNING, str(label_map or src), name, "0 instances",
                                        f"class {name!r} has no instances after validation; "
                                        f"the model cannot learn it"))
            elif counts["train"] == 0:
                findings.append(Finding(WARNING, str(src), name,
                                        f"0 train, {counts['val']} val",
                                        f"class {name!r} has no training instances"))
        counts = {"train_images": written["train"], "val_images": written["val"],
                  "instances": sum(sum(c.values()) for c in per_class.values()),
                  "images_refused": refused_images, "instances_refused": refused_instances,
                  "fixed": sum(f.severity == FIXED for f in findings),
                  "warnings": sum(f.severity == WARNING for f in findings),
                  "ignored": sum(f.severity == IGNORED for f in findings),
                  "default_labelled": sum(named_by_default.values()),
                  "train_shards": n_train_shards, "val_shards": n_val_shards}
        classes = {name: {"id": ids_by_name[name], "train": c["train"], "val": c["val"]}
                   for name, c in per_class.items()}
        if written["train"] == 0:
            _fail(f"no training image survived validation ({refused_images} of {len(tasks)} "
                  f"images and {refused_instances} instances refused)", findings,
                  report(counts, classes), out, verbose)
        if counts["instances"] == 0:  # e.g. --label-map names none of the labels
            _fail(f"no instance survived validation ({refused_instances} refused; the "
                  f"{written.total()} images left would be negative examples only)", findings,
                  report(counts, classes), out, verbose)
        for split, gt in gts.items():
            gt.finish(folder.ground_truth(split), lm)
        folder.label_map.write_text(lm.to_pbtxt(), encoding="utf-8")
        seconds = time.perf_counter() - t0
        summary = ConvertSummary(
            out=out, train_images=written["train"], val_images=written["val"],
            instances=counts["instances"], images_refused=refused_images,
            instances_refused=refused_instances, fixed=counts["fixed"],
            warnings=counts["warnings"], seconds=seconds, train_shards=n_train_shards,
            val_shards=n_val_shards, label_map=lm, findings=findings,
            ignored=counts["ignored"], default_labelled=counts["default_labelled"],
            instances_read=instances_read, default_label=default_label)
        with open(folder.report, "w", encoding="utf-8") as f:
            json.dump(report({**counts, "seconds": round(seconds, 2)}, classes), f, indent=1)
    # A report left beside OUT by an earlier run that could write nothing is stale now.
    DatasetFolder(out).failed_report.unlink(missing_ok=True)
    if verbose:
        _print_findings(findings, DatasetFolder(out).report)
        print(summary.line())
    return summary
