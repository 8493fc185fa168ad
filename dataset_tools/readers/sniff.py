"""Which annotation format a file or folder looks like, and the evidence: the one place that
answers "this is not my format" for every reader.

A reader calls :func:`not_this_format` when what it was given fails its own structure check
(wrong JSON keys, another XML root, a folder where a file belongs...). The error then names
the format SRC looks like and the command for it, or, when no reader takes that format, what
to do instead; when nothing is recognised, the reader's own message stands.

Recognised, as each tool writes it:
  coco     a COCO instances JSON: an object with "images", "annotations" and "categories"
           lists (https://cocodataset.org/#format-data); in a folder, annotations/*.json
  labelme  a LabelMe JSON per image: an object with a "shapes" list and "imagePath" or
           "imageData"; the format takes their folder
  via      VIA 1.x/2.x: an object of {"filename", "regions", ...} entries keyed by
           "<filename><size>", or a VIA 2 project with "_via_img_metadata"
  cvat     "CVAT for images 1.1" / "CVAT for video 1.1" XML: root <annotations> holding
           <image> / <track> elements
  voc      Pascal VOC: a root with Annotations/ (<annotation> XMLs), SegmentationObject/,
           SegmentationClass/, ImageSets/; without SegmentationObject/ the XMLs hold boxes
           only (read with --box-as-polygon)
Read by no reader, named so that the message says what to do: COCO panoptic (annotations
with "segments_info"), a COCO results list (detections with "score"), VIA 3 projects, the
VIA CSV export, Label Studio's JSON export (a list of tasks with "data" and
"annotations[].result[]"), YOLO (labels/*.txt lines "class x y ..." in 0..1, data.yaml with
"names"), LabelMe 3.0 XML (root <annotation> with <object><polygon><pt>), zip archives and
images.

Everything here is only run on the way to an error, so it may read a few whole files; a
folder is searched two levels deep, at most :data:`_MAX_FILES` annotation files.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from maskrcnn_toolkit.core.errors import UserError

# What each reader takes, for "not X" in messages.
TAKES = {
    "coco": "a COCO instances JSON",
    "labelme": "LabelMe JSON",
    "via": "a VIA 1.x/2.x JSON",
    "cvat": "a CVAT XML",
    "voc": "a Pascal VOC root folder",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_MAX_FILES = 12  # annotation files parsed when a folder is searched
_MAX_ENTRIES = 2000  # folder entries listed when a folder is searched
_UNREAD = object()
_YOLO_LINE = re.compile(r"^\d+(\s+[-+0-9.eE]+){4,}$")


@dataclass(frozen=True)
class Guess:
    """What a file or folder looks like.

    what: the format in words ("a COCO instances file").
    evidence: what was seen ("top-level 'images', 'annotations', 'categories'").
    looked_at: the file or folder the evidence is from.
    src: what to give as SRC for it (e.g. the folder of a LabelMe JSON, the root of a VOC
      XML).
    format: the FORMAT that reads it, or None when no reader does.
    flags: options to add to the command (e.g. " --box-as-polygon").
    note: why the flags (supported format), or what to do instead (format None).
    """

    what: str
    evidence: str
    looked_at: Path
    src: Path
    format: str | None = None
    flags: str = ""
    note: str = ""


class WrongFormat(UserError):
    """SRC is another format than the one asked for. ``message(out)`` names the command
    with the user's OUT; ``str()`` says OUT."""

    def __init__(self, fmt: str, src: Path, guess: Guess):
        self.fmt, self.src, self.guess = fmt, Path(src), guess
        super().__init__(self.message())

    def message(self, out: str | os.PathLike = "OUT") -> str:
        g, src = self.guess, self.src
        if g.looked_at == src:
            text = f"{src} looks like {g.what} ({g.evidence})"
        else:
            text = f"{src} holds {g.what}: {g.looked_at} ({g.evidence})"
        if g.format != self.fmt:
            text += f", not {TAKES[self.fmt]}"
        if g.format is None:
            return f"{text}; {g.note}"
        cmd = (f"python -m dataset_tools convert {g.format} {shlex.quote(str(g.src))} "
               f"{shlex.quote(os.fspath(out))}{g.flags}")
        return f"{text}; use `{cmd}`" + (f" ({g.note})" if g.note else "")


def not_this_format(fmt: str, src: str | os.PathLike, problem: str, data=_UNREAD) -> UserError:
    """The error a reader of ``fmt`` raises when ``src`` is not what it reads.

    Args:
      problem: the reader's own message, used when ``src`` looks like nothing known, or like
        ``fmt`` itself (then the reader's message is the more precise one).
      data: ``src`` already parsed as JSON, if the reader has it (saves reading it again).
    Returns:
      A :class:`WrongFormat` naming the format ``src`` looks like, else ``UserError(problem)``.
    """
    src = Path(src)
    guess = sniff(src, data, prefer=fmt)
    if guess is None or (guess.format == fmt and guess.src == src):
        return UserError(problem)
    return WrongFormat(fmt, src, guess)


def sniff(path: str | os.PathLike, data=_UNREAD, prefer: str | None = None) -> Guess | None:
    """What ``path`` (a file or a folder) looks like, or None.

    Args:
      data: the file already parsed as JSON, if at hand.
      prefer: in a folder that holds several formats, a guess of this format wins (the
        file the user most likely meant).
    """
    path = Path(path)
    try:
        if path.is_dir():
            return _sniff_dir(path, prefer)
        if path.is_file():
            return _sniff_file(path, data)
    except OSError:  # unreadable: the reader's own message says so
        return None
    return None


# ----------------------------------------------------------------------------- files
def _sniff_file(path: Path, data=_UNREAD) -> Guess | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return Guess("an image, not annotations", f"file suffix {suffix!r}", path, path,
                     note="give the annotation file or folder; the images are found from it "
                          "(--images DIR says where they are)")
    if data is not _UNREAD:
        return _sniff_json(path, data)
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"PK\x03\x04"):
        return Guess("a zip archive", "it starts with the zip signature", path, path,
                     note=f"extract it first (unzip {shlex.quote(path.name)} -d DIR) and give "
                          f"the annotation file or folder it holds")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"{", b"["):
        from maskrcnn_toolkit.core.json_files import read_json
        try:
            return _sniff_json(path, read_json(path, "JSON"))
        except UserError:
            return None
    if text[:1] == b"<":
        return _sniff_xml(path)
    return _sniff_text(path, head.decode("utf-8", "replace"))


def _keys(d: dict, names) -> str:
    return ", ".join(repr(k) for k in names if k in d)


def _sniff_json(path: Path, data) -> Guess | None:
    if isinstance(data, dict):
        if isinstance(data.get("images"), list) and isinstance(data.get("annotations"), list):
            anns = data["annotations"]
            ev = f"top-level {_keys(data, ('images', 'annotations', 'categories'))}"
            if anns and isinstance(anns[0], dict) and "segments_info" in anns[0]:
                return Guess("a COCO panoptic file", ev + ", annotations with 'segments_info'",
                             path, path, note="panoptic PNG segments are not read; give the "
                                              "COCO instances JSON (instances_*.json)")
            return Guess("a COCO instances file", ev, path, path, "coco")
        if isinstance(data.get("shapes"), list) and ("imagePath" in data or "imageData" in data):
            return Guess("a LabelMe annotation", f"{_keys(data, ('shapes', 'imagePath'))}",
                         path, path.parent, "labelme",
                         note="the labelme format reads every LabelMe JSON under that folder")
        if "_via_img_metadata" in data:
            return Guess("a VIA 2 project", "top-level '_via_img_metadata'", path, path, "via")
        if "project" in data and ("file" in data or "metadata" in data):
            return Guess("a VIA 3 project", "top-level 'project' and 'file'/'metadata'", path,
                         path, note="VIA 3 projects are not read; open it in VIA 2 or export "
                                    "the annotations as VIA 2 JSON, then use `convert via`")
        entries = list(data.items())[:20]
        if entries and all(isinstance(e, dict) and "filename" in e and "regions" in e
                           for _, e in entries):
            return Guess("a VIA 1.x/2.x annotation file",
                         f"entries such as {entries[0][0]!r} with 'filename' and 'regions'",
                         path, path, "via")
        return None
    if isinstance(data, list) and data and all(isinstance(t, dict) for t in data[:20]):
        t = data[0]
        results = [k for k in ("annotations", "predictions", "completions")
                   if isinstance(t.get(k), list)]
        if isinstance(t.get("data"), dict) and results:
            return Guess("a Label Studio JSON export",
                         f"a list of tasks with 'data' and {results[0]!r}", path, path,
                         note="Label Studio's own JSON is not read; in Label Studio export the "
                              "project as COCO and give that JSON to `convert coco`")
        if {"image_id", "category_id", "score"} <= set(t):
            return Guess("a COCO results list (detections with scores)",
                         "a list of objects with 'image_id', 'category_id' and 'score'", path,
                         path, note="convert reads ground truth (a COCO instances JSON with "
                                    "'images', 'annotations', 'categories'); results are "
                                    "scored with `evaluate.py --gt GT --detections FILE`")
    return None


def _sniff_xml(path: Path) -> Guess | None:
    """Look at the root and its first elements only (iterparse, stopped early)."""
    from lxml import etree
    root_tag, seen = None, set()
    try:
        for n, (_, el) in enumerate(etree.iterparse(
                str(path), events=("start",), resolve_entities=False, no_network=True,
                huge_tree=True)):
            tag = el.tag if isinstance(el.tag, str) else ""
            if root_tag is None:
                root_tag = tag
                continue
            seen.add(tag)
            if tag in ("image", "track", "bndbox", "pt", "imagesize") or n > 20000:
                break
    except etree.XMLSyntaxError:
        pass  # judged on what was read before the break
    if root_tag == "annotations":
        if "track" in seen:
            what, ev = "a CVAT for video 1.1 XML", "root <annotations> with <track> elements"
        elif "image" in seen:
            what, ev = "a CVAT for images 1.1 XML", "root <annotations> with <image> elements"
        else:
            what, ev = "a CVAT XML", "root <annotations>"
        return Guess(what, ev, path, path, "cvat")
    if root_tag == "annotation":
        if "pt" in seen or "imagesize" in seen:  # VOC has <size> and <bndbox> instead
            ev = "<imagesize>" if "imagesize" in seen else "<polygon><pt>"
            return Guess("a LabelMe 3.0 XML", f"root <annotation> with {ev}", path, path,
                         note="LabelMe 3.0 XML is not read; export the annotations as COCO, "
                              "CVAT XML or LabelMe JSON")
        root = path.parent.parent if path.parent.name == "Annotations" else path.parent
        return Guess("a Pascal VOC annotation XML", "root <annotation>"
                     + (" with <object><bndbox>" if "bndbox" in seen else ""), path, root,
                     "voc", *_voc_flags(root))
    return None


def _sniff_text(path: Path, head: str) -> Guess | None:
    suffix = path.suffix.lower()
    first = head.splitlines()[0].strip() if head.strip() else ""
    if suffix == ".csv" and first.startswith("filename,file_size,file_attributes"):
        return Guess("a VIA CSV export", "header 'filename,file_size,file_attributes,...'",
                     path, path,
                     note="the VIA CSV export is not read; in VIA use 'Annotation > Export "
                          "Annotations (as json)' and give that file to `convert via`")
    if suffix == ".txt" and path.parent.parent.name == "ImageSets":
        root = path.parent.parent.parent
        return Guess("a Pascal VOC image list", "a .txt list under ImageSets/", path,
                     path, "voc", *_voc_flags(root))
    if suffix in (".yaml", ".yml") and re.search(r"(?m)^names\s*:", head) and re.search(
            r"(?m)^(train|val|path|nc)\s*:", head):
        return _yolo(path, path.parent, "a data.yaml with 'names' and 'train'/'path'")
    lines = [ln.strip() for ln in head.splitlines()[:50] if ln.strip()]
    if suffix == ".txt" and lines and all(_is_yolo_line(ln) for ln in lines[:-1] or lines):
        root = path.parent.parent if path.parent.name == "labels" else path.parent
        return _yolo(path, root, f"lines such as {lines[0][:40]!r}: a class id and "
                                 f"coordinates in 0..1")
    return None


def _is_yolo_line(line: str) -> bool:
    if not _YOLO_LINE.match(line):
        return False
    parts = line.split()
    try:
        coords = [float(v) for v in parts[1:]]
    except ValueError:
        return False
    return len(parts) % 2 == 1 and all(-1e-6 <= v <= 1 + 1e-6 for v in coords)


def _yolo(looked_at: Path, root: Path, evidence: str) -> Guess:
    return Guess("a YOLO dataset", evidence, looked_at, root,
                 note="YOLO labels are not read; convert them to a COCO instances JSON first "
                      "(or export the annotations as COCO from your annotation tool) and use "
                      "`convert coco`")


# ----------------------------------------------------------------------------- folders
_VOC_DIRS = ("Annotations", "SegmentationObject", "SegmentationClass", "ImageSets")


def _voc_flags(root: Path) -> tuple[str, str]:
    """(flags, note) for a VOC root: --box-as-polygon when it has XML boxes but no masks."""
    if (root / "Annotations").is_dir() and not (root / "SegmentationObject").is_dir():
        return (" --box-as-polygon", "no SegmentationObject/: its Annotations XMLs hold boxes "
                                     "only, which --box-as-polygon uses as rectangle masks")
    return "", ""


def _voc_root(path: Path) -> Guess | None:
    found = [d for d in _VOC_DIRS if (path / d).is_dir()]
    if not found:
        return None
    if found == ["ImageSets"] and not (path / "JPEGImages").is_dir():
        return None
    flags, note = _voc_flags(path)
    what = "a Pascal VOC dataset" + (" with boxes only" if flags else "")
    return Guess(what, "folders " + ", ".join(f"{d}/" for d in found), path, path, "voc",
                 flags, note)


def _listing(path: Path) -> tuple[list[Path], list[Path]]:
    """(files, folders) two levels deep, shallow first, hidden names skipped, bounded."""
    files, dirs, level, count = [], [], [path], 0
    for _ in range(3):
        nxt = []
        for d in level:
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                count += 1
                if e.name.startswith(".") or count > _MAX_ENTRIES:
                    continue
                p = Path(e.path)
                if e.is_dir():
                    nxt.append(p)
                    dirs.append(p)
                elif e.is_file():
                    files.append(p)
        level = nxt
    return files, dirs


def _sniff_dir(path: Path, prefer: str | None) -> Guess | None:
    files, dirs = _listing(path)
    guesses: list[Guess] = []
    for d in [path, *dirs]:
        if d == path or d.name not in _VOC_DIRS + ("JPEGImages",):
            g = _voc_root(d)
            if g is not None:
                guesses.append(g)
    # YOLO: data.yaml, or label files in labels/ (Ultralytics also uses labels/<split>/).
    yolo = [f for f in files if f.name in ("data.yaml", "data.yml")]
    yolo += [f for f in files if f.suffix == ".txt" and "labels" in (f.parent.name,
                                                                   f.parent.parent.name)][:5]
    for f in yolo:
        g = _sniff_file(f)
        if g is not None and g.what == "a YOLO dataset":
            guesses.append(Guess(g.what, g.evidence, g.looked_at, path, note=g.note))
            break
    parsed = 0
    labelme: dict[Path, list[Path]] = {}  # folder -> LabelMe JSONs seen in it
    for f in files:
        if f.suffix.lower() not in (".json", ".xml", ".csv") or parsed >= _MAX_FILES:
            continue
        if any(p.name in _VOC_DIRS for p in f.relative_to(path).parents):
            continue  # a VOC root's XMLs: the root was judged above
        parsed += 1
        g = _sniff_file(f)
        if g is None:
            continue
        if g.format == "labelme":
            labelme.setdefault(g.src, []).append(f)
            if len(labelme[g.src]) > 1:
                continue
        guesses.append(g)
    if not guesses:
        return None
    # Shallow first: the folder itself, then what it holds.
    guesses.sort(key=lambda g: len(g.looked_at.relative_to(path).parts))
    chosen = next((g for g in guesses if g.format == prefer), guesses[0])
    if chosen.format == "labelme" and len(labelme[chosen.src]) > 1:
        many = labelme[chosen.src]
        chosen = Guess("LabelMe annotations", f"{len(many)} of the JSONs looked at, e.g. "
                       f"{many[0].name}, have 'shapes' and 'imagePath'", chosen.src,
                       chosen.src, "labelme", note=chosen.note)
    same = [str(g.looked_at.relative_to(path)) for g in guesses
            if g.what == chosen.what and g is not chosen]
    if same:
        chosen = Guess(chosen.what, f"{chosen.evidence}; also {', '.join(same[:3])}",
                       chosen.looked_at, chosen.src, chosen.format, chosen.flags, chosen.note)
    return chosen
