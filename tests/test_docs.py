"""The documentation holds together: every relative link in README.md, docs/*.md and tests/README.md
names a path of the repository (and its #anchor a heading of the page it names), every docs/ page
is reachable from the front page, and the front page stays short."""
import glob
import os
import re

from helpers import ROOT

README_MAX_LINES = 200
# [text](target) and ![alt](target), with an optional "title"; the text holds no brackets.
LINK = re.compile(r'!?\[[^\[\]]*\]\(\s*([^()\s]+)(?:\s+"[^"]*")?\s*\)')
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+).*?\1")
EXTERNAL = ("http://", "https://", "mailto:")


def doc_pages():
    pages = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "tests", "README.md")]
    return pages + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def prose_lines(text):
    """The lines of a markdown text outside fenced code blocks, with inline code spans removed."""
    fenced = False
    for line in text.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield CODE_SPAN.sub("", line)


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped (word characters, spaces and
    hyphens kept), each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    """The anchors of a markdown file's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    seen, out = {}, set()
    for line in prose_lines(read(path)):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(1))
            out.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
    return out


def links(path):
    return [target for line in prose_lines(read(path)) for target in LINK.findall(line)]


def broken_links(path, root=ROOT):
    """Each relative link of the markdown file at `path` that names no path under `root`, or an anchor
    that is no heading of the page it names, as 'target: why'."""
    broken = []
    for target in links(path):
        if target.startswith(EXTERNAL):
            continue
        file_part, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if os.path.relpath(dest, root).startswith(os.pardir):
            broken.append(f"{target}: outside the repository")
        elif not os.path.exists(dest):
            broken.append(f"{target}: no such file")
        elif anchor and not (dest.endswith(".md") and anchor in anchors(dest)):
            broken.append(f"{target}: no heading with this anchor in {os.path.relpath(dest, root)}")
    return broken


def test_every_relative_link_resolves():
    broken = {os.path.relpath(p, ROOT): broken_links(p) for p in doc_pages()}
    assert not {page: b for page, b in broken.items() if b}


def test_the_link_check_finds_broken_links_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(
        "# A page\n\n## The paper's Fig. 1, at CPU scale\n\n## Notes\n\n## Notes\n")
    (tmp_path / "figure.png").write_bytes(b"")
    (tmp_path / "README.md").write_text(
        "# Front\n\n"
        "[ok](docs/page.md) [ok](docs/page.md#the-papers-fig-1-at-cpu-scale) ![ok](figure.png) "
        "[ok](docs/page.md#notes-1) [ok](#front) [ok](https://example.org/none.md)\n"
        "[missing](docs/none.md) [bad anchor](docs/page.md#fig-1) [third notes](docs/page.md#notes-2) "
        "[here](#nowhere) [anchor in a png](figure.png#top) [up](../elsewhere.md)\n"
        "`[in a code span](docs/none2.md)`\n\n```\n[in a fence](docs/none3.md)\n```\n")
    assert broken_links(str(tmp_path / "README.md"), root=str(tmp_path)) == [
        "docs/none.md: no such file",
        "docs/page.md#fig-1: no heading with this anchor in docs/page.md",
        "docs/page.md#notes-2: no heading with this anchor in docs/page.md",
        "#nowhere: no heading with this anchor in README.md",
        "figure.png#top: no heading with this anchor in figure.png",
        "../elsewhere.md: outside the repository",
    ]


def test_slugs_are_githubs():
    """Anchors GitHub gives these headings (read off rendered pages)."""
    assert slug("Will it fit? Memory, time and multi-node runs") == "will-it-fit-memory-time-and-multi-node-runs"
    assert slug("Sampling (`generate.py`)") == "sampling-generatepy"
    assert slug("The fast modes' quality, measured exactly") == "the-fast-modes-quality-measured-exactly"
    assert slug("Training LLaDA-8B (GPUs)") == "training-llada-8b-gpus"


def test_the_front_page_is_short_and_links_every_docs_page():
    readme = os.path.join(ROOT, "README.md")
    assert len(read(readme).splitlines()) <= README_MAX_LINES
    linked = {os.path.normpath(os.path.join(ROOT, t.partition("#")[0])) for t in links(readme)}
    unlinked = set(glob.glob(os.path.join(ROOT, "docs", "*.md"))) - linked
    assert not unlinked, f"docs pages the README does not link: {sorted(unlinked)}"
