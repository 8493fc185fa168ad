"""The docs a user meets first stay short and their links stay alive.

README.md is the front door: at most 200 lines, and its first code block holds the two
commands (`make demo`, `make test`), which the Makefile defines. Every relative link in
README.md and docs/*.md must point at a file or folder of the repository, and a
``#anchor`` at a heading of the target page (GitHub's heading ids).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 200

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target); the target ends at whitespace or ")".
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code (where brackets are not links)."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def links(text: str) -> list[str]:
    return _LINK.findall(_prose(text))


def slug(heading: str) -> str:
    """GitHub's id for a heading: markup dropped, lower case, punctuation removed, spaces
    to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The ids of every heading in ``text``; repeated headings get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for _, title in _HEADING.findall(_FENCE.sub("", text)):
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of ``page`` that does not resolve, with the reason."""
    text = page.read_text(encoding="utf-8")
    bad = []
    for target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if root.resolve() not in (dest, *dest.parents):
            bad.append(f"{target}: points outside the repository")
            continue
        if not dest.exists():
            bad.append(f"{target}: {dest.relative_to(root.resolve())} does not exist")
            continue
        if anchor:
            if dest.suffix != ".md" or not dest.is_file():
                bad.append(f"{target}: an anchor into a file that is not a markdown page")
            elif anchor not in anchors(dest.read_text(encoding="utf-8")):
                bad.append(f"{target}: no heading '#{anchor}' in {dest.name}")
    return bad


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; keep it <= {MAX_README_LINES}"


def test_readme_gives_the_two_commands_first():
    text = README.read_text(encoding="utf-8")
    first_block = _FENCE.search(text)
    assert first_block, "README.md has no code block"
    commands = [ln.split("#")[0].strip() for ln in first_block.group(0).splitlines()[1:-1]]
    assert "make demo" in commands and "make test" in commands, (
        f"README.md's first code block should hold `make demo` and `make test`; it holds "
        f"{commands}")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "test"):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no {target!r} target"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    assert broken_links(page) == []


def test_the_docs_pages_exist():
    docs = ROOT / "docs"
    for name in ("convert", "train", "evaluate", "export", "annotate", "python_api",
                 "troubleshooting", "benchmarks", "development", "DESIGN_NOTES"):
        assert (docs / f"{name}.md").is_file(), f"docs/{name}.md is missing"


# The checker itself must be able to fail: a broken link, a missing anchor and an escape
# from the repository are each reported; links in code are not links.
def test_the_link_checker_finds_broken_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(
        "# A page\n\n## Two words, `code`!\n\n## Two words, `code`!\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "# Title\n"
        "[ok](docs/page.md) [ok anchor](docs/page.md#two-words-code) "
        "[repeated](docs/page.md#two-words-code-1) [here](#title) "
        "![img](docs/page.md) [web](https://example.com/x)\n"
        "[missing](docs/nope.md) [bad anchor](docs/page.md#nowhere) [out](../elsewhere.md)\n"
        "`[not a link](nope.md)`\n```\n[nor this](nope.md)\n```\n",
        encoding="utf-8")
    bad = broken_links(tmp_path / "README.md", root=tmp_path)
    assert len(bad) == 3, bad
    assert bad[0].startswith("docs/nope.md: ")
    assert bad[1].startswith("docs/page.md#nowhere: no heading")
    assert bad[2].startswith("../elsewhere.md: points outside")
