"""``report.html``: what a person looks at after an evaluation. One self-contained file
(pictures inline as data URIs, a few lines of CSS, no script, no network): opened from disk
in any browser.

:func:`build_report` turns an ``EvalReport`` scored with an analysis (``score(...,
analysis_threshold=...)``) into the page; every number on it is a number of metrics.json
(the COCO stats, ``analysis``). Sections: summary; per class at the operating point;
curves; confusion matrix; where the AP goes; galleries; by size; the run (``--config``
mode). :func:`report_path` says where it goes; :func:`write_report` writes it atomically.
"""
from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Callable

import numpy as np

from maskrcnn_toolkit.core.atomic import atomic_write
from maskrcnn_toolkit.core.draw import class_color
from maskrcnn_toolkit.modeling import report_plots
from maskrcnn_toolkit.modeling.report_plots import KIND_COLORS, TYPE_NAMES
from maskrcnn_toolkit.modeling.tide import ERROR_KINDS

GALLERY_PER_CLASS = 4
_KIND_MEANING = {
    "classification": "right place, wrong class (IoU >= 0.5 with an object of another class)",
    "localisation": "right class, badly placed (IoU 0.1-0.5 with an object of its class)",
    "both": "wrong class and badly placed",
    "duplicate": "a second detection of an object already found",
    "background": "a detection of nothing (IoU <= 0.1 with every object)",
    "missed": "an object no detection found (nor explains)"}
_CSS = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1180px;padding:0 16px 40px;
color:#222}
nav{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #ddd;
font-size:14px;z-index:5}
nav a{margin-right:12px}
h2{margin-top:34px;border-bottom:1px solid #eee}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f5f5f5}td.l,th.l{text-align:left}
.sw{display:inline-block;width:11px;height:11px;margin-right:4px;border:1px solid #555;
vertical-align:middle}
.note{color:#555;font-size:13px}.warn{color:#a40}
img.plot{max-width:100%;display:block;margin:8px 0}
.gal{display:flex;flex-wrap:wrap;gap:10px}
.gal figure{margin:0;font-size:12px}
.gal img{width:360px;border:1px solid #ccc;cursor:zoom-in}
.gal figure:target img{position:fixed;inset:0;margin:auto;width:auto;max-width:96vw;
max-height:94vh;z-index:10;cursor:zoom-out;box-shadow:0 0 0 100vmax rgba(0,0,0,.75)}
"""


def report_path(metrics_path: str | os.PathLike) -> Path:
    """Where report.html goes beside a metrics file: ``metrics.json`` -> ``report.html``,
    ``X.metrics.json`` -> ``X.report.html``, ``X.json`` -> ``X.report.html``."""
    p = Path(metrics_path)
    if p.name.endswith("metrics.json"):
        return p.with_name(p.name[:-len("metrics.json")] + "report.html")
    return p.with_name((p.name[:-5] if p.name.endswith(".json") else p.name) + ".report.html")


def write_report(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


# ----------------------------------------------------------------------------- helpers

def _e(x) -> str:
    return html.escape(str(x))


def _img(data: bytes, mime: str = "image/png", cls: str = "plot", alt: str = "") -> str:
    return (f'<img class="{cls}" alt="{_e(alt)}" '
            f'src="data:{mime};base64,{base64.b64encode(data).decode("ascii")}">')


def _num(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "n/a" if v == -1 else f"{v:.{digits}f}"
    return str(v)


def _swatch(rgb) -> str:
    return f'<span class="sw" style="background:rgb{tuple(int(c) for c in rgb)}"></span>'


def _table(head: list[str], rows: list[list], left: int = 1) -> str:
    th = "".join(f'<th{" class=l" if k < left else ""}>{h}</th>' for k, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td{" class=l" if k < left else ""}>{c}</td>'
                                    for k, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _jpeg(picture: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="JPEG", quality=88)
    return buf.getvalue()


# ----------------------------------------------------------------------------- sections

def _summary(report, title: str) -> str:
    rows = [[TYPE_NAMES[t], _num(m["AP"]), _num(m["AP50"]), _num(m["AP75"])]
            for t, m in report.metrics.items()]
    c = report.counts
    facts = [("evaluated", report.extras.get("source") or title),
             ("numbers by", report.backend),
             ("images", c["images"]), ("ground-truth instances", c["gt_instances"]),
             ("detections scored", c["detections"]), ("classes", c["categories"])]
    facts += [(k, v) for k, v in report.extras.items() if k in ("step", "inference_seconds")]
    warn = "".join(f'<li class="warn">{_e(w)}</li>' for w in report.warnings) or "<li>none</li>"
    return ("<h2 id=summary>Summary</h2>" + _table(["", "AP", "AP50", "AP75"], rows)
            + _table(["", ""], [[_e(k), _e(v)] for k, v in facts])
            + f"<p>Warnings:</p><ul>{warn}</ul>"
            + '<p class="note">AP is pycocotools\' AP (IoU 0.50:0.95, area all, 100 '
              "detections), exactly as in metrics.json.</p>")


def _key(rows) -> str:
    return "<p>" + " ".join(f"{_swatch(class_color(r['category_id']))}{_e(r['name'])}"
                            for r in rows) + "</p>"


def _per_class(a: dict, types: list[str]) -> str:
    out = ["<h2 id=per-class>Per class at the operating point</h2>",
           f'<p class="note">Detections with score >= {a["score_threshold"]}, matched to '
           f"ground truth of their class at IoU >= {a['iou_threshold']} (greedy by score). "
           "The suggested threshold is the score that maximises the class's F1.</p>"]
    for t in types:
        part = a[t]
        rows = [[f"{_swatch(class_color(r['category_id']))}{_e(r['name'])}",
                 r["gt_instances"], r["detections"], r["tp"], r["fp"], r["fn"],
                 _num(r["precision"]), _num(r["recall"]), _num(r["f1"]),
                 _num(r["best_threshold"], 3), _num(r["best_f1"])]
                for r in part["per_class"]]
        s = part["all"]
        rows.append(["<b>all</b>", s["gt_instances"], s["detections"], s["tp"], s["fp"],
                     s["fn"], _num(s["precision"]), _num(s["recall"]), _num(s["f1"]), "", ""])
        out.append(f"<h3>{TYPE_NAMES[t]}</h3>" + _table(
            ["class", "GT", "detections", "TP", "FP", "FN", "precision", "recall", "F1",
             "suggested threshold", "F1 there"], rows))
    return "".join(out)


def _curves(a: dict, types: list[str], png: dict) -> str:
    return ("<h2 id=curves>Curves</h2>" + _key(a[types[0]]["per_class"])
            + "<p class=note>Precision against recall: pycocotools' interpolated curves "
              "(their mean over recall is AP50 / AP75).</p>" + _img(png["pr"], alt="PR curves")
            + "<p class=note>F1 against the score threshold (IoU 0.5); dashed: the "
              "operating threshold; dots: each class's best.</p>"
            + _img(png["f1"], alt="F1 curves"))


def _confusion(a: dict, types: list[str]) -> str:
    out = ["<h2 id=confusion>Confusion matrix</h2>",
           "<p class=note>Rows: ground truth; columns: prediction. The background column "
           "counts missed objects, the background row detections of nothing (and "
           "duplicates). Each class row sums to its ground truth.</p>"]
    for t in types:
        c = a[t]["confusion"]
        counts = np.array(c["counts"], np.float64)
        sums = counts.sum(1, keepdims=True)
        norm = np.divide(counts, sums, out=np.zeros_like(counts), where=sums > 0)
        for label, values, fmt in (("counts", counts, "{:.0f}"),
                                   ("row-normalised", norm, "{:.2f}")):
            peak = max(float(values.max()), 1.0) if label == "counts" else 1.0
            rows = []
            for i, name in enumerate(c["labels"]):
                cells = []
                for j in range(len(c["labels"])):
                    v = values[i, j]
                    shade = int(255 - 160 * min(v / peak, 1.0))
                    color = f"rgb({shade},{shade},255)" if i == j else \
                        f"rgb(255,{shade},{shade})"
                    cells.append(f'<span style="display:block;background:{color}">'
                                 f"{fmt.format(v)}</span>")
                rows.append([f"<b>{_e(name)}</b>"] + cells)
            out.append(f"<h3>{TYPE_NAMES[t]}, {label} — IoU >= {a['iou_threshold']}, score "
                       f">= {a['score_threshold']}</h3>"
                       + _table(["GT \\ predicted"] + [_e(x) for x in c["labels"]], rows))
    return "".join(out)


def _errors(a: dict, types: list[str]) -> str:
    head = ["kind", "what it is"] + [f"{TYPE_NAMES[t]} dAP" for t in types] + \
        [f"{TYPE_NAMES[t]} count" for t in types]
    top = max([100 * a[t]["errors"]["dAP"][k] for t in types for k in ERROR_KINDS] + [1.0])

    def bar(k: str, t: str) -> str:
        # the dAP as a bar (120 px = the largest), then its value
        v = 100 * a[t]["errors"]["dAP"][k]
        return (f'<span style="display:inline-block;height:10px;width:{120 * v / top:.0f}px;'
                f'background:rgb{KIND_COLORS[k]};vertical-align:middle"></span> {v:.2f}')
    rows = [[f"{_swatch(KIND_COLORS[k])}{k}", _e(_KIND_MEANING[k])]
            + [bar(k, t) for t in types]
            + [a[t]["errors"]["counts"][k] for t in types] for k in ERROR_KINDS]
    for k, what in (("false_positives", "every false positive scored below every true "
                     "positive"), ("false_negatives", "every unmatched object removed")):
        rows.append([k.replace("_", " "), what]
                    + [_num(100 * a[t]["errors"]["dAP_special"][k], 2) for t in types]
                    + ["" for _ in types])
    aps = ", ".join(f"{TYPE_NAMES[t]} {100 * a[t]['errors']['ap50']:.1f}" for t in types)
    return ("<h2 id=errors>Where the AP goes</h2><p class=note>TIDE (Bolya et al., ECCV "
            "2020), IoU 0.5: each error kind's dAP is the AP50 gained (in points) if every "
            "error of that kind alone were fixed. TIDE's AP50 is its own computation, close "
            f"to pycocotools' AP50: here {aps}.</p>"
            + _table(head, rows, left=2))


def _galleries(report, t: str, load_images: Callable | None, note: str | None) -> str:
    from maskrcnn_toolkit.modeling.report_gallery import draw_errors, image_errors, select_images
    out = ["<h2 id=galleries>Galleries</h2>"]
    legend = " ".join(f"{_swatch(KIND_COLORS[k])}{k}" for k in ERROR_KINDS)
    if load_images is None:
        return "".join(out) + f"<p class=note>{_e(note or 'No images to draw.')}</p>"
    a, d = report.analysis, report.details
    m = d.matches[t]
    categories = {r["category_id"]: r["name"] for r in a[t]["per_class"]}
    errors = image_errors(m, a["score_threshold"])
    chosen = select_images(m, errors, categories, GALLERY_PER_CLASS)
    wanted = sorted({m.image_ids[k] for picks in chosen.values() for k, _ in picks})
    pictures = load_images(wanted) if wanted else {}
    out.append(f"<p class=note>Per class, the images with the most errors of that class "
               f"({TYPE_NAMES[t]}, score >= {a['score_threshold']}, IoU 0.5). Left: ground "
               "truth; right: prediction. Errors are outlined by kind: "
               f"{legend}. Click a picture for full size.</p>")
    if note:
        out.append(f"<p class=note>{_e(note)}</p>")
    drawn: dict[int, str] = {}
    for c, (name, picks) in enumerate(chosen.items()):
        figs = []
        for k, n in picks:
            image_id = m.image_ids[k]
            if pictures.get(image_id) is None:
                figs.append(f"<figure>image {image_id}: picture not found ({n} "
                            f"error{'' if n == 1 else 's'})</figure>")
                continue
            if image_id not in drawn:
                pic = draw_errors(pictures[image_id], m, k, errors, d.gt, d.dets, t)
                drawn[image_id] = _img(_jpeg(pic), "image/jpeg", "", f"image {image_id}")
            fid = f"g{c}-{image_id}"  # ids without the class name: names may hold spaces
            figs.append(f'<figure id="{fid}"><a href="#{fid}">{drawn[image_id]}</a>'
                        f'<figcaption><a href="#galleries">image {image_id}</a>: {n} '
                        f"error{'' if n == 1 else 's'}</figcaption></figure>")
        out.append(f"<h3>{_e(name)}</h3>" + (f'<div class="gal">{"".join(figs)}</div>'
                                              if figs else "<p class=note>no errors</p>"))
    return "".join(out)


def _by_size(report, a: dict, types: list[str], png: dict) -> str:
    rows = a[types[0]]["per_class"]
    table = [[f"{_swatch(class_color(r['category_id']))}{_e(r['name'])}"]
             + [f"{r['by_size'][s]['gt_instances']} / {_num(r['by_size'][s]['recall'], 2)}"
                for s in ("small", "medium", "large")] for r in rows]
    stats = [[TYPE_NAMES[t]] + [_num(report.metrics[t][k]) for k in ("APs", "APm", "APl")]
             for t in types]
    return ("<h2 id=size>By size</h2><p class=note>COCO's sizes: small < 32², medium < "
            "96², large (pixels of area).</p>"
            + _table(["", "AP small", "AP medium", "AP large"], stats)
            + _img(png["sizes"], alt="sizes")
            + f"<p class=note>Ground truth / recall at score >= {a['score_threshold']} "
              f"({TYPE_NAMES[types[0]]}), per size:</p>"
            + _table(["class", "small", "medium", "large"], table))


def _run_plots(run_dir, data_dir) -> tuple[dict, dict]:
    """(the dataset's health, the plot jobs of the run's section)."""
    from maskrcnn_toolkit.modeling.run_history import dataset_health, read_scalars
    h = dataset_health(data_dir)
    jobs = {"training": ("training_curves", (read_scalars(run_dir),))}
    if h["per_class"]:
        ids = {n: k + 1 for k, n in enumerate(h["per_class"])}
        jobs["dataset"] = ("dataset_plots", (h["per_class"], ids, h["areas"]))
    return h, jobs


def _run(run_dir, data_dir, h: dict, plots: dict) -> str:
    out = ["<h2 id=run>The run</h2>"]
    png = plots["training"]
    out.append(f"<p class=note>TensorBoard scalars of {_e(run_dir)} (train/ and eval/).</p>")
    out.append(_img(png, alt="training") if png else
               "<p class=note>No training scalars found.</p>")
    out.append(f"<h3>The dataset: {_e(data_dir)}</h3>")
    if h["report"]:
        out.append(_table(["convert's report.json", ""],
                          [[_e(k), _e(v)] for k, v in h["report"].items()]))
    else:
        out.append("<p class=note>No report.json in the data folder.</p>")
    if h["findings"]:
        out.append("<ul>" + "".join(f"<li>{_e(f)}</li>" for f in h["findings"]) + "</ul>")
    if h["per_class"]:
        splits = sorted({s for c in h["per_class"].values() for s in c})
        out.append(_table(["class"] + splits, [[_e(n)] + [c.get(s, 0) for s in splits]
                                               for n, c in h["per_class"].items()]))
        out.append(_img(plots["dataset"], alt="dataset"))
    return "".join(out)


def build_report(report, title: str, load_images: Callable[[list[int]], dict] | None = None,
                 gallery_note: str | None = None, run_dir: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None,
                 worker: report_plots.PlotWorker | None = None) -> str:
    """The HTML text of the report of ``report`` (an EvalReport with ``analysis`` and
    ``details``). ``load_images``: image ids -> {id: uint8 [H, W, 3] RGB (None when
    missing)}, for the galleries; without it the galleries say ``gallery_note``.
    ``run_dir`` and ``data_dir`` (``--config`` mode) add the section on the run.
    ``worker``: a started :class:`report_plots.PlotWorker` draws the plots while the
    galleries are drawn here (else everything is drawn here)."""
    a = report.analysis
    types = [t for t in ("segm", "bbox") if t in report.metrics]
    rows = a[types[0]]["per_class"]
    ids = {r["name"]: r["category_id"] for r in rows}
    m = report.details.matches[types[0]]
    jobs = {"pr": ("pr_curves", (report.details.curves,)),
            "f1": ("f1_curves", (a, types, ids)),
            "sizes": ("area_histogram", ({r["name"]: m.gt_area[m.gt_cls == r["category_id"]]
                                          for r in rows}, ids))}
    health = None
    if run_dir is not None:
        health, more = _run_plots(run_dir, data_dir)
        jobs.update(more)
    collect = report_plots.plotter(worker)(jobs)
    galleries = _galleries(report, types[0], load_images, gallery_note)
    png = collect()
    sections = [("summary", "Summary"), ("per-class", "Per class"), ("curves", "Curves"),
                ("confusion", "Confusion"), ("errors", "Where the AP goes"),
                ("galleries", "Galleries"), ("size", "By size")]
    if run_dir is not None:
        sections.append(("run", "The run"))
    parts = [_summary(report, title), _per_class(a, types), _curves(a, types, png),
             _confusion(a, types), _errors(a, types), galleries,
             _by_size(report, a, types, png)]
    if run_dir is not None:
        parts.append(_run(run_dir, data_dir, health, png))
    nav = "".join(f'<a href="#{k}">{v}</a>' for k, v in sections)
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>"
            f"{_e(title)}</title><style>{_CSS}</style></head><body><nav>{nav}</nav>"
            f"<h1>Evaluation report</h1><p class=note>{_e(title)}</p>{''.join(parts)}"
            "</body></html>\n")
