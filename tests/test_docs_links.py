"""The documentation holds together: every relative link in README.md and docs/ leads to a
file that exists, and to a heading in it when the link names one; the README stays a short
read that links every page under docs/ and keeps the test command CI runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").rglob("*.md"))]
README_MAX_LINES = 250

_MARKDOWN = MarkdownIt("commonmark").enable("table")


def _walk(tokens: list[Token]) -> Iterator[Token]:
    for token in tokens:
        yield token
        if token.children:
            yield from _walk(token.children)


@cache
def _tokens(path: Path) -> list[Token]:
    return _MARKDOWN.parse(path.read_text())


def _slug(text: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to `-`."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    tokens = _tokens(path)
    seen: dict[str, int] = {}
    found = set()
    for i, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        inline = tokens[i + 1]
        text = "".join(
            child.content
            for child in _walk(inline.children or [])
            if child.type in ("text", "code_inline")
        )
        slug = _slug(text)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(found)


def links(path: Path) -> list[str]:
    found = []
    for token in _walk(_tokens(path)):
        if token.type == "link_open":
            found.append(str(token.attrs["href"]))
        elif token.type == "image":
            found.append(str(token.attrs["src"]))
    return found


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def broken_links(document: Path) -> list[str]:
    broken = []
    for href in links(document):
        parts = urlsplit(href)
        if parts.scheme or parts.netloc:
            continue  # http(s), mailto: not ours to check offline
        target = (document.parent / unquote(parts.path)).resolve() if parts.path else document
        try:
            name = _relative(target)
        except ValueError:
            broken.append(f"{href}: outside the repository")
            continue
        if not target.exists():
            broken.append(f"{href}: no file {name}")
            continue
        fragment = unquote(parts.fragment)
        if fragment and target.suffix == ".md" and fragment not in anchors(target):
            broken.append(f"{href}: {name} has no heading #{fragment}")
    return broken


def test_the_parser_sees_links_and_headings() -> None:
    # Guards the checks below against passing because nothing was found.
    assert len(links(README)) >= 10
    assert "the-two-commands" in anchors(README)
    assert _slug("Composition: how an operation list becomes passes") == (
        "composition-how-an-operation-list-becomes-passes"
    )
    assert _slug("Performance (control plane)") == "performance-control-plane"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_relative)
def test_relative_links_resolve(document: Path) -> None:
    assert broken_links(document) == []


def test_readme_is_a_short_read() -> None:
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference to docs/"


def test_readme_links_every_page_under_docs() -> None:
    linked = set()
    for href in links(README):
        parts = urlsplit(href)
        if not parts.scheme and parts.path:
            linked.add(_relative((ROOT / unquote(parts.path)).resolve()))
    pages = {_relative(page) for page in DOCUMENTS[1:]}
    assert pages <= linked, sorted(pages - linked)


def test_readme_holds_the_command_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci.startswith("python3 -m venv .venv")
    assert f"```sh\n{ci}\n```" in README.read_text()


def test_the_layout_map_names_every_subpackage() -> None:
    layout = re.search(r"^## Layout\n(.*?)(?=^## |\Z)", README.read_text(), re.M | re.S)
    assert layout
    names = set(re.findall(r"^\s+([\w.]+/?)\s", layout[1], re.M))
    packages = {
        init.parent.name + "/"
        for root in ("sparc_video", "workers")
        for init in (ROOT / root).glob("*/__init__.py")
    }
    assert packages <= names, sorted(packages - names)
