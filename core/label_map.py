"""Label maps: class ids 1..N (0 is background), in the TF Object Detection API's text format.

```
item {
  id: 1
  name: 'bolt'
}
```
Model Garden's ``num_classes`` counts the background, so it is ``len(label_map) + 1``
(docs/DESIGN_NOTES.md, decision 3).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from maskrcnn_toolkit.core.atomic import atomic_write
from maskrcnn_toolkit.core.errors import UserError

# Names labelme's own tooling uses for "not a class" lines in labels.txt (and as shape
# labels: __ignore__ marks don't-care regions); any __name__ is reserved the same way.
NON_CLASS_NAMES = ("__ignore__", "_background_")
_RESERVED = re.compile(r"^__.+__$")


def is_non_class_name(name: str) -> bool:
    """Whether a label names no object class: ``__ignore__``, ``_background_`` or any
    ``__name__`` (labelme's convention for regions to ignore and for the background)."""
    return name in NON_CLASS_NAMES or bool(_RESERVED.match(name))


@dataclass(frozen=True)
class LabelMap:
    """An ordered mapping of class id (int >= 1) to unique class name."""

    names_by_id: Mapping[int, str]

    def __post_init__(self):
        seen = {}
        for i, name in self.names_by_id.items():
            if not isinstance(i, int) or i < 1:
                raise UserError(f"label map id {i!r} for {name!r} is invalid; ids start at 1 "
                                f"(0 is the background)")
            if name in seen:
                raise UserError(f"label map names {name!r} twice (ids {seen[name]} and {i}); "
                                f"each class needs one id")
            seen[name] = i
        object.__setattr__(self, "names_by_id", dict(sorted(self.names_by_id.items())))

    @classmethod
    def from_names(cls, names: Iterable[str]) -> "LabelMap":
        """Ids 1..N in the given order."""
        return cls({i: n for i, n in enumerate(names, start=1)})

    @property
    def ids_by_name(self) -> dict[str, int]:
        return {n: i for i, n in self.names_by_id.items()}

    @property
    def names(self) -> list[str]:
        return list(self.names_by_id.values())

    @property
    def ids(self) -> list[int]:
        return list(self.names_by_id)

    @property
    def num_classes_with_background(self) -> int:
        """What Model Garden calls ``num_classes``: the largest id + 1."""
        return max(self.names_by_id, default=0) + 1

    def name(self, class_id: int) -> str:
        return self.names_by_id.get(int(class_id), f"class_{int(class_id)}")

    def __len__(self) -> int:
        return len(self.names_by_id)

    def __contains__(self, name: str) -> bool:
        return name in self.ids_by_name

    def to_pbtxt(self) -> str:
        out = []
        for i, name in self.names_by_id.items():
            escaped = name.replace("\\", "\\\\").replace("'", "\\'")
            out.append(f"item {{\n  id: {i}\n  name: '{escaped}'\n}}\n")
        return "".join(out)


def write_label_map(path: str | os.PathLike, label_map: LabelMap) -> None:
    with atomic_write(path, "w") as f:
        f.write(label_map.to_pbtxt())


_TOKEN = re.compile(r"""\s*(?:(\#[^\n]*)|([{}:])"""
                    r"""|("(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')|([^\s{}:"'#]+))""")


_ESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|u([0-9a-fA-F]{4})"
                     rb"|U([0-9a-fA-F]{8})|(.))", re.S)
_SIMPLE_ESCAPES = {b"n": b"\n", b"t": b"\t", b"r": b"\r", b"a": b"\a", b"b": b"\b",
                   b"f": b"\f", b"v": b"\v"}


def unescape_text_format(body: str, path: str) -> str:
    """Undo protobuf text-format escapes in a quoted string's body, keeping every other
    character as it is.

    Works on the UTF-8 bytes because protobuf writes non-ASCII text either literally or as
    octal/hex escapes of its UTF-8 bytes ('\\303\\244' is 'ä'); ``unicode_escape`` would
    instead read each UTF-8 byte of a literal 'ä' as a Latin-1 character ('Ã¤').
    """
    def one(m: re.Match) -> bytes:
        octal, hexa, u4, u8, other = m.groups()
        if octal or hexa:
            return bytes([int(octal, 8) & 0xFF if octal else int(hexa, 16)])
        if u4 or u8:
            cp = int(u4 or u8, 16)
            if cp > 0x10FFFF:
                raise UserError(f"{path}: escape U+{cp:X} in {body!r} is not a Unicode "
                                f"character; write the name as plain UTF-8")
            return chr(cp).encode("utf-8", "surrogatepass")
        return _SIMPLE_ESCAPES.get(other, other)  # \\ \' \" \? and unknown: the char
    raw = _ESCAPE.sub(one, body.encode("utf-8"))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: the name {body!r} has escapes that are not UTF-8 text; "
                        f"write the name as plain UTF-8") from None


def _tokens(text: str, path: str):
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                return
            raise UserError(f"{path}: cannot parse label map near {text[pos:pos + 30]!r}")
        pos = m.end()
        comment, punct, string, word = m.groups()
        if comment:
            continue
        if punct:
            yield punct
        elif string:
            yield ("str", unescape_text_format(string[1:-1], path))
        elif word:
            yield word


def parse_label_map(text: str, path: str = "<label map>") -> LabelMap:
    """Parse the OD API ``StringIntLabelMap`` text format (``item { id: N name: '...' }``;
    ``display_name`` is read when ``name`` is absent; other fields are ignored)."""
    toks = list(_tokens(text, path))
    items, i = [], 0
    while i < len(toks):
        if toks[i] != "item" or i + 1 >= len(toks) or toks[i + 1] != "{":
            raise UserError(f"{path}: expected 'item {{' but found {toks[i]!r}; a label map is "
                            f"a list of item {{ id: 1 name: 'bolt' }} blocks")
        i += 2
        fields = {}
        while i < len(toks) and toks[i] != "}":
            key = toks[i]
            if i + 2 >= len(toks) or toks[i + 1] != ":":
                raise UserError(f"{path}: expected 'field: value' after {key!r}")
            val = toks[i + 2]
            fields[key] = val[1] if isinstance(val, tuple) else val
            i += 3
        i += 1
        items.append(fields)
    names = {}
    for f in items:
        name = f.get("name", f.get("display_name"))
        if "id" not in f or name is None:
            raise UserError(f"{path}: item {f} needs both 'id' and 'name'")
        try:
            cid = int(f["id"])
        except ValueError:
            raise UserError(f"{path}: id {f['id']!r} of {name!r} is not an integer") from None
        if cid in names:
            raise UserError(f"{path}: id {cid} is used by both {names[cid]!r} and {name!r}")
        names[cid] = name
    if not names:
        raise UserError(f"{path}: the label map has no items")
    return LabelMap(names)


def read_label_map(path: str | os.PathLike) -> LabelMap:
    """Read a ``.pbtxt`` label map, or a ``.txt`` with one class name per line (labelme's
    ``labels.txt``; its ``__ignore__`` / ``_background_`` lines are not classes)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise UserError(f"cannot read label map {path!r}: {e.strerror}") from None
    if path.endswith(".txt"):
        names = [ln.strip() for ln in text.splitlines()]
        return LabelMap.from_names(n for n in names if n and not is_non_class_name(n))
    return parse_label_map(text, path)
