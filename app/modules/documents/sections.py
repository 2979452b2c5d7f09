"""Split one markdown file into heading-aware sections with line ranges.

markdown-it-py does the parsing, so fenced code (a ``# comment`` inside a fence is not a
heading), setext headings and front matter follow CommonMark rather than a regex's guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

import yaml
from markdown_it import MarkdownIt
from mdit_py_plugins.front_matter import front_matter_plugin


@dataclass(frozen=True, slots=True)
class Section:
    """One heading-delimited piece of a document (or a slice of a long one)."""

    path: str  # relative to the markdown root, POSIX separators
    title: str  # the document's title (front matter, first H1, or the file name)
    headings: tuple[str, ...]  # heading path below the title
    line_start: int  # 1-based, inclusive
    line_end: int  # 1-based, inclusive
    text: str  # the section's markdown, heading line excluded
    lead: str = ""  # the document's description / first paragraph, shared by its sections
    # The document's own category and tags from its front matter ("category: Resilience",
    # "tag: PHP"): what a list of documents can be anchored by.
    labels: tuple[str, ...] = ()

    @property
    def heading_path(self) -> str:
        """``Title > Heading > Sub-heading`` as a reader would write it."""
        return " > ".join((self.title, *self.headings))


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # Only block structure is needed: inline parsing is most of markdown-it's cost.
    return MarkdownIt("commonmark").use(front_matter_plugin).disable("inline")


_FRONT_MATTER_KEYS = ("description", "summary", "abstract", "category", "categories", "tags", "keywords")
# An underscore inside a word is part of a name ("reason_phrase"), not emphasis.
_INLINE_MARKUP = re.compile(r"[*`]+|(?<!\w)_+|_+(?!\w)|\[([^\]]*)\]\([^)]*\)|<[^>]+>")


# "## CORS { #cors }" or "### Flags {#flags}": an anchor for the site generator, not for people.
_HEADING_ATTRIBUTES = re.compile(r"\s*\{\s*[#.][^{}]*\}\s*$")


def _clean_heading(raw: str) -> str:
    text = _HEADING_ATTRIBUTES.sub("", raw)
    text = _INLINE_MARKUP.sub(lambda m: m.group(1) or "", text)
    return " ".join(text.split()).strip("#").strip()


def _front_matter(content: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(content)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError):
        # Broken front matter (even "date: 2024-13-45", which PyYAML turns into a
        # ValueError) costs the file its metadata, never the index its sync.
        return {}
    return data if isinstance(data, dict) else {}


def _values(meta: dict[str, Any], key: str) -> list[str]:
    """A front-matter key's values as text: one value, or each item of a list; dates, maps
    and other structures are not text a reader searches."""
    value = next((v for k, v in meta.items() if str(k).lower() == key), None)
    items = value if isinstance(value, list) else [value]
    return [
        " ".join(str(item).split())
        for item in items
        if isinstance(item, str | int | float) and not isinstance(item, bool) and str(item).strip()
    ]


def _front_matter_text(meta: dict[str, Any]) -> str:
    return " ".join(v for key in _FRONT_MATTER_KEYS for v in _values(meta, key))


# Front-matter keys that file a page under a category or tag, by what they call one.
_LABEL_KEYS = {"category": "category", "categories": "category", "tags": "tag", "tag": "tag"}
MAX_LABELS = 50  # a page's labels travel with each of its sections: a bounded few


def _labels(meta: dict[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    for key, name in _LABEL_KEYS.items():
        for value in _values(meta, key):
            # "tags: php, security" is two tags, as site generators read it.
            for said in (v.strip() for v in value.split(",")):
                # The key travels with the value: the page says "category: Resilience".
                label = f"{name}: {said}"
                if said and label not in found:
                    found.append(label)
    return tuple(found[:MAX_LABELS])


def _title_from_path(path: str) -> str:
    stem = PurePosixPath(path).stem
    return re.sub(r"[-_]+", " ", stem).strip().capitalize() or path


def split_markdown(
    text: str, path: str, *, max_chars: int = 1800, overlap_chars: int = 200
) -> list[Section]:
    """Sections of ``text`` (a whole file), long ones sliced into overlapping pieces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    tokens = _parser().parse(text)

    meta: dict[str, Any] = {}
    body_start = 0
    headings: list[tuple[int, int, int, str]] = []  # (level, first line, next line, text)
    first_paragraph = ""
    for index, token in enumerate(tokens):
        if token.type == "front_matter" and token.map:
            meta = _front_matter(token.content)
            body_start = token.map[1]
        elif token.type == "heading_open" and token.map:
            level = int(token.tag[1])
            headings.append((level, token.map[0], token.map[1], _clean_heading(tokens[index + 1].content)))
        elif token.type == "paragraph_open" and not first_paragraph and token.level == 0:
            first_paragraph = tokens[index + 1].content

    title = str(meta.get("title") or "").strip()
    h1s = [h for h in headings if h[0] == 1]
    title_from_h1 = not title and bool(h1s) and h1s[0] is headings[0]
    if not title:
        title = h1s[0][3] if title_from_h1 else _title_from_path(path)
    lead = " ".join(f"{_front_matter_text(meta)} {first_paragraph}".split())[:400]
    labels = _labels(meta)

    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    # The span before the first heading (an introduction) is a section of its own.
    boundaries = [(0, body_start, body_start, "")] + headings
    for i, (level, _, body_from, heading) in enumerate(boundaries):
        if i > 0:
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading))
        end = boundaries[i + 1][1] if i + 1 < len(boundaries) else len(lines)
        path_titles = [h for _, h in stack if h]
        if path_titles and path_titles[0].casefold() == title.casefold():
            path_titles = path_titles[1:]
        sections.extend(
            _slices(
                lines,
                body_from,
                end,
                path=path,
                title=title,
                headings=tuple(path_titles),
                lead=lead,
                labels=labels,
                max_chars=max_chars,
                overlap_chars=overlap_chars,
            )
        )
    return sections


def _blocks(lines: list[str], start: int, end: int) -> Iterator[tuple[int, int]]:
    """Paragraph-sized line ranges ``[a, b)``; a fenced code block stays one block."""
    i = start
    while i < end:
        while i < end and not lines[i].strip():
            i += 1
        if i >= end:
            return
        j = i
        fence = re.match(r"\s{0,3}(`{3,}|~{3,})", lines[i])
        if fence:
            marker = fence.group(1)
            j += 1
            while j < end and not lines[j].lstrip().startswith(marker[0] * len(marker)):
                j += 1
            j = min(j + 1, end)
        else:
            while j < end and lines[j].strip():
                j += 1
        yield i, j
        i = j


def _slices(
    lines: list[str],
    start: int,
    end: int,
    *,
    path: str,
    title: str,
    headings: tuple[str, ...],
    lead: str,
    labels: tuple[str, ...],
    max_chars: int,
    overlap_chars: int,
) -> Iterator[Section]:
    pieces: list[tuple[int, int]] = []
    for a, b in _blocks(lines, start, end):
        pieces.extend(_fit(lines, a, b, max_chars))
    if not pieces:
        return

    # offsets[k] - offsets[j] - 1 is the length of lines[j:k] joined by newlines: the
    # size a slice really has, blank lines between its paragraphs included.
    offsets = [0]
    for line in lines[: end + 1]:
        offsets.append(offsets[-1] + len(line) + 1)

    def span(first: int, last: int) -> int:
        return offsets[last] - offsets[first] - 1

    def emit(group: list[tuple[int, int]]) -> Iterator[Section]:
        first, last = group[0][0], group[-1][1]
        body = "\n".join(lines[first:last]).strip()
        if len(body) <= max_chars:
            yield Section(path, title, headings, first + 1, last, body, lead, labels)
            return
        # Only a single enormous line gets here: cut it into overlapping windows so that
        # no row holds megabytes and no character is dropped.
        step = max(max_chars - overlap_chars, max_chars // 4)
        starts = list(range(0, max(len(body) - max_chars, 0) + 1, step))
        if starts[-1] + max_chars < len(body):
            starts.append(len(body) - max_chars)
        for offset in starts:
            window = body[offset : offset + max_chars]
            yield Section(path, title, headings, first + 1, last, window, lead, labels)

    group: list[tuple[int, int]] = []
    for piece in pieces:
        if group and span(group[0][0], piece[1]) > max_chars:
            yield from emit(group)
            # Carry the tail of this slice into the next one so that a fact split across
            # the boundary is still whole in one of them, as long as the next slice still
            # has room for the new piece.
            carried: list[tuple[int, int]] = []
            for previous in reversed(group):
                if span(previous[0], group[-1][1]) > overlap_chars:
                    break
                if span(previous[0], piece[1]) > max_chars:
                    break
                carried.insert(0, previous)
            group = carried
        group.append(piece)
    if group:
        yield from emit(group)


def _fit(lines: list[str], a: int, b: int, max_chars: int) -> Iterator[tuple[int, int]]:
    """Split a block that is longer than ``max_chars`` at line boundaries."""
    size = 0
    start = a
    for k in range(a, b):
        line_size = len(lines[k]) + 1
        if k > start and size + line_size > max_chars:
            yield start, k
            start, size = k, 0
        size += line_size
    yield start, b
