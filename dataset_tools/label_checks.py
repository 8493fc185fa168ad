"""Checks on the label names the readers found, before any image is opened: labels that
look like typos of one another, and regions that got their class from ``--default-label``.
Both become warning :class:`~dataset_tools.validate.Finding` s (report and console), because
either one silently makes a class the user did not mean: ``persn`` beside ``person`` is a
class with one instance, and VIA regions without attributes all become ``object``.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from maskrcnn_toolkit.dataset_tools.records import ImageRecord
from maskrcnn_toolkit.dataset_tools.validate import WARNING, Finding

_SEPARATORS = re.compile(r"[\s_\-]+")
_DIGITS = re.compile(r"\d+")


@dataclass
class _Seen:
    count: int
    example: str  # where one instance of it is ("img.json shapes[3]")
    file: str  # that instance's annotation file


def _how_similar(a: str, b: str) -> str | None:
    """Why two distinct labels look like one class written two ways, or None.

    - equal ignoring case, spaces, underscores and hyphens ("Traffic light",
      "traffic_light");
    - an edit distance (insertions, deletions, substitutions; case ignored) of 1 when the
      shorter name has at least 4 characters, or 2 when it has at least 8 ("persn" /
      "person"); shorter names differ meaningfully by one letter ("cat" / "car").
    Names that differ only in their digits ("part1" / "part2") are numbered classes, not
    typos.
    """
    (fa, da), (fb, db) = _folded(a), _folded(b)
    if fa == fb:
        return "only by case, spaces, underscores or hyphens"
    shorter = min(len(fa), len(fb))
    limit = 2 if shorter >= 8 else 1 if shorter >= 4 else 0
    if limit == 0 or abs(len(fa) - len(fb)) > limit or da == db:
        return None
    d = _edit_distance(fa, fb, limit)
    if d > limit:
        return None
    return f"by {d} letter{'s' if d > 1 else ''}"


@lru_cache(maxsize=4096)
def _folded(name: str) -> tuple[str, str]:
    """(name without case, spaces, underscores and hyphens; the same with every number as
    "#"), computed once per label: every pair of labels is compared."""
    f = _SEPARATORS.sub("", name.casefold())
    return f, _DIGITS.sub("#", f)


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance of a and b, or limit + 1 once it is known to exceed limit."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
        if min(cur) > limit:
            return limit + 1
        prev = cur
    return prev[-1]


def _deletions(word: str, k: int) -> set[str]:
    """``word`` with up to ``k`` characters deleted (``word`` itself included)."""
    out, frontier = {word}, {word}
    for _ in range(k):
        frontier = {w[:i] + w[i + 1:] for w in frontier for i in range(len(w))}
        out |= frontier
    return out


def _candidate_pairs(names) -> list[tuple[str, str]]:
    """Pairs of labels that may be within the edit distance _how_similar allows, sorted:
    two strings at most k edits apart become equal after at most k deletions from each
    ("symmetric delete"), so only labels that share such a variant are compared; comparing
    every pair took ~20 s for 2,000 labels."""
    by_variant: dict[str, list[str]] = {}
    for name in names:
        folded = _folded(name)[0]
        k = 2 if len(folded) >= 8 else 1 if len(folded) >= 4 else 0
        for v in _deletions(folded, k):
            by_variant.setdefault(v, []).append(name)
    pairs = {tuple(sorted((a, b))) for group in by_variant.values() if len(group) > 1
             for i, a in enumerate(group) for b in group[i + 1:]}
    return sorted(pairs)


def similar_labels(records: Iterable[ImageRecord]) -> list[Finding]:
    """One warning per pair of labels that look like one class written two ways, naming
    both, their instance counts and where one instance of each is. The rarer label comes
    first (the likely typo); the finding's file is that label's."""
    seen: dict[str, _Seen] = {}
    for rec in records:
        for inst in rec.instances:
            s = seen.get(inst.label)
            if s is None:
                seen[inst.label] = _Seen(1, inst.source or f"{rec.annotation_file} "
                                                            f"{rec.file_name}",
                                         rec.annotation_file)
            else:
                s.count += 1
    findings = []
    for a, b in _candidate_pairs(seen):
        how = _how_similar(a, b)
        if how is None:
            continue
        rare, common = sorted((a, b), key=lambda n: (seen[n].count, n))
        r, c = seen[rare], seen[common]
        findings.append(Finding(
            WARNING, r.file, f"labels {rare!r} and {common!r}",
            f"{rare!r} x{r.count}, {common!r} x{c.count}",
            f"label {rare!r} ({r.count} instance{'s' if r.count != 1 else ''}, e.g. "
            f"{r.example}) differs from {common!r} ({c.count}, e.g. {c.example}) {how}; "
            f"they are two classes now. If one is a typo, correct it in the annotations "
            f"and convert again"))
    return findings


def default_labelled(records: Iterable[ImageRecord]) -> tuple[Counter, int]:
    """(regions named by ``--default-label`` per annotation file, all instances read)."""
    per_file: Counter = Counter()
    total = 0
    for rec in records:
        total += len(rec.instances)
        for inst in rec.instances:
            if inst.default_label:
                per_file[rec.annotation_file] += 1
    return per_file, total


def default_label_findings(per_file: Counter, label: str) -> list[Finding]:
    """A warning per annotation file whose regions were named ``label`` only because
    ``--default-label`` was not given (its default named them)."""
    return [Finding(WARNING, file, "region_attributes", f"{n} regions",
                    f"no region has a class attribute, so all {n} were named {label!r}, the "
                    f"default of --default-label; pass --default-label NAME to name their "
                    f"class")
            for file, n in per_file.items()]
