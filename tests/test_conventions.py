"""Box conventions are named at every boundary (docs/development.md, Box conventions).

The rule, checked with ``ast`` on every module of the repository (the package, bench/ and
tests/): a *box name* is one whose last ``_``-separated part is ``box``, ``boxes``,
``bbox`` or ``bboxes`` (any case: ``boxes``, ``gt_boxes``, ``BOXES``, a field ``bbox``).
A box name says nothing of its convention, so none may appear as

- a function or lambda parameter,
- a class attribute: a dataclass / NamedTuple field or any name assigned in a class body,
- an instance attribute (``self.boxes = ...`` in a method),
- a module-level name.

Name it with the convention instead: ``boxes_yxyx_px``, ``boxes_yxyx_norm``,
``boxes_xyxy_px``, ``boxes_xywh_px`` (``box_...`` for one box). Names that merely start
with ``box`` (``box_masks``, ``box_as_polygon``, ``box_w``) are not boxes and pass; local
variables are left to review (a short name whose line says the convention is fine). File
formats keep their own keys: this checks Python names, not strings (``"bbox"`` in COCO
JSON, ``detection_boxes`` tensors).
"""
from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

BOX_WORDS = {"box", "boxes", "bbox", "bboxes"}
SUFFIXES = ("yxyx_px", "yxyx_norm", "xyxy_px", "xywh_px")
SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", "build", "dist", "node_modules"}


def is_box_name(name: str) -> bool:
    return name.rsplit("_", 1)[-1].lower() in BOX_WORDS


def _fix(name: str) -> str:
    """The four convention-named spellings of a box name: ``bbox`` -> ``box_yxyx_px``...,
    ``gt_boxes`` -> ``gt_boxes_yxyx_px``..."""
    head, _, stem = name.rpartition("_")
    word = "box" if stem.lower() in ("box", "bbox") else "boxes"
    word = word.upper() if stem.isupper() else word
    prefix = f"{head}_" if head else ""
    return ", ".join(f"{prefix}{word}_{s.upper() if stem.isupper() else s}" for s in SUFFIXES)


def _targets(node: ast.AST):
    """The Name / Attribute nodes an assignment target binds (tuples unpacked)."""
    if isinstance(node, (ast.Tuple, ast.List)):
        for elt in node.elts:
            yield from _targets(elt)
    elif isinstance(node, ast.Starred):
        yield from _targets(node.value)
    else:
        yield node


def _assigned(stmt: ast.stmt):
    if isinstance(stmt, ast.Assign):
        for t in stmt.targets:
            yield from _targets(t)
    elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
        yield from _targets(stmt.target)


def box_name_violations(source: str, filename: str = "<string>") -> list[str]:
    """'file:line: what 'name' ...: fix' for every box name the rule above refuses."""
    tree = ast.parse(source, filename)
    found: list[tuple[int, str]] = []

    def flag(line: int, what: str, name: str, shown: str | None = None) -> None:
        if is_box_name(name):
            found.append((line, f"{filename}:{line}: {what} {shown or name!r} does not name "
                                f"its box convention; rename it to one of {_fix(name)}"))

    for stmt in tree.body:  # module-level names
        for t in _assigned(stmt):
            if isinstance(t, ast.Name):
                flag(stmt.lineno, "module-level name", t.id)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            owner = getattr(node, "name", "lambda")
            for arg in [*a.posonlyargs, *a.args, a.vararg, *a.kwonlyargs, a.kwarg]:
                if arg is not None:
                    flag(arg.lineno, f"{owner}() parameter", arg.arg)
            if isinstance(node, ast.Lambda) or not (a.posonlyargs or a.args):
                continue
            self_name = (a.posonlyargs or a.args)[0].arg
            for sub in ast.walk(node):
                if isinstance(sub, ast.stmt):
                    for t in _assigned(sub):
                        if (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                                and t.value.id == self_name and self_name in ("self", "cls")):
                            flag(sub.lineno, "attribute", t.attr, f"{self_name}.{t.attr}")
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                for t in _assigned(stmt):
                    if isinstance(t, ast.Name):
                        flag(stmt.lineno, f"{node.name} field / class attribute", t.id)
    return [msg for _, msg in sorted(set(found))]


def python_files() -> list[Path]:
    out = []
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT)
        if not any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts[:-1]):
            out.append(p)
    return out


def test_every_box_name_says_its_convention():
    files = python_files()
    assert len(files) > 50 and any(p.name == "detections.py" for p in files)  # found them
    bad = []
    for p in files:
        bad += box_name_violations(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))
    assert not bad, "box names without a convention:\n" + "\n".join(bad)


PLANTED = '''\
from dataclasses import dataclass
BOXES = [[0, 0, 1, 1]]
boxes_yxyx_norm = BOXES

def draw(image, boxes, *, gt_bbox=None, box_masks=None, box_as_polygon=False):
    f = lambda box: box
    return f

@dataclass
class Found:
    bbox: tuple
    boxes_xywh_px: list
    box_w: int = 0

class Holder:
    def __init__(self, boxes_yxyx_px):
        self.boxes, self.n = boxes_yxyx_px, 1
        self.box_yxyx_px = boxes_yxyx_px[0]
'''


def test_the_check_fails_on_a_planted_example():
    """The check can fail: each bare box name in PLANTED is reported, with file, line and
    the fix; the named ones (and box_masks, box_as_polygon, box_w) are not."""
    bad = box_name_violations(PLANTED, "planted.py")
    fix = "does not name its box convention; rename it to one of"
    assert bad == [
        f"planted.py:2: module-level name 'BOXES' {fix} BOXES_YXYX_PX, BOXES_YXYX_NORM, "
        f"BOXES_XYXY_PX, BOXES_XYWH_PX",
        f"planted.py:5: draw() parameter 'boxes' {fix} boxes_yxyx_px, boxes_yxyx_norm, "
        f"boxes_xyxy_px, boxes_xywh_px",
        f"planted.py:5: draw() parameter 'gt_bbox' {fix} gt_box_yxyx_px, gt_box_yxyx_norm, "
        f"gt_box_xyxy_px, gt_box_xywh_px",
        f"planted.py:6: lambda() parameter 'box' {fix} box_yxyx_px, box_yxyx_norm, "
        f"box_xyxy_px, box_xywh_px",
        f"planted.py:11: Found field / class attribute 'bbox' {fix} box_yxyx_px, "
        f"box_yxyx_norm, box_xyxy_px, box_xywh_px",
        f"planted.py:17: attribute 'self.boxes' {fix} boxes_yxyx_px, boxes_yxyx_norm, "
        f"boxes_xyxy_px, boxes_xywh_px",
    ]
