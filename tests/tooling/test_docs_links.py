"""The README stays short and every page it leads to is reachable.

* README.md is at most 12 KiB: the details live under docs/;
* every relative link and image in README.md and docs/**/*.md resolves to a file or directory of
  the repository, relative to the page that holds it, and every ``#anchor`` into a Markdown file
  names one of its headings (GitHub's slugs);
* the README links every page of docs/.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from serve_app.config import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS_DIR = REPO_ROOT / "docs"
PAGES = [README, *sorted(DOCS_DIR.glob("**/*.md"))]
README_LIMIT_BYTES = 12 * 1024

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"(`+).+?\1")
# [text](target) and ![alt](target); the target ends at whitespace (a title may follow) or ")".
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def prose_lines(path: Path) -> list[str]:
    """The lines of a Markdown file outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text().splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def links_of(path: Path) -> list[str]:
    """Every link and image target of a Markdown file, outside code."""
    return [match[1] for line in prose_lines(path) for match in _LINK.finditer(_INLINE_CODE.sub("", line))]


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@cache
def anchors_of(path: Path) -> frozenset[str]:
    """The anchors of a Markdown file's headings; a repeated one gets -1, -2, ... as on GitHub."""
    seen: Counter[str] = Counter()
    anchors = set()
    for line in prose_lines(path):
        heading = _HEADING.match(line)
        if heading is None:
            continue
        slug = github_slug(heading[2])
        anchors.add(slug if seen[slug] == 0 else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return frozenset(anchors)


def broken_links(page: Path) -> list[str]:
    """The relative links of a page that lead nowhere, with the reason."""
    broken = []
    for target in links_of(page):
        if _SCHEME.match(target) or target.startswith("//"):
            continue
        location, _, anchor = target.partition("#")
        resolved = (page.parent / location).resolve() if location else page
        if not resolved.exists():
            broken.append(f"{target}: no such file {resolved}")
        elif location and page.resolve().is_relative_to(REPO_ROOT) and not resolved.is_relative_to(REPO_ROOT):
            broken.append(f"{target}: outside the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors_of(resolved):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {resolved.name}")
    return broken


def test_the_readme_is_at_most_12_kib():
    size = len(README.read_bytes())
    assert size <= README_LIMIT_BYTES, (
        f"README.md is {size:,} bytes; move details to docs/ (limit {README_LIMIT_BYTES:,})"
    )


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(REPO_ROOT)) for page in PAGES])
def test_every_relative_link_and_anchor_resolves(page: Path):
    assert broken_links(page) == []


def test_the_readme_links_every_page_of_docs():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links_of(README)}
    pages = sorted(DOCS_DIR.glob("*.md"))
    assert pages, "docs/ has no pages"
    assert [str(page.relative_to(REPO_ROOT)) for page in pages if page.resolve() not in linked] == []


def test_the_link_checker_finds_what_it_should(tmp_path: Path):
    assert github_slug("Open Inference Protocol (KServe V2)") == "open-inference-protocol-kserve-v2"
    assert github_slug("4. Send a digit") == "4-send-a-digit"
    assert github_slug("Serve's `other` modes") == "serves-other-modes"
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Part\n\n## Part\n\n[ok](#part-1) [bad](#nope) ![img](missing.png) [web](https://x.org/a)\n"
        "```bash\n# not a heading [in code](missing.md)\n```\n`[code](missing.md)`\n"
    )
    assert anchors_of(page) == {"title", "part", "part-1"}
    assert links_of(page) == ["#part-1", "#nope", "missing.png", "https://x.org/a"]
    assert [problem.split(":")[0] for problem in broken_links(page)] == ["#nope", "missing.png"]
