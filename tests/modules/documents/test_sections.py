"""Markdown -> heading-aware sections (app.modules.documents.sections) and file decoding."""

from __future__ import annotations

import codecs
import itertools

import pytest

from app.modules.documents.corpus import UndecodableFile, decode_text
from app.modules.documents.sections import Section, split_markdown

GUIDE = """\
# Field Guide

Welcome to the guide.

## Installation

Run the installer.
Then reboot.

### Linux

Use the package manager.

### Windows

Use the MSI file.

## Usage

Start the app.
"""
# Line numbers (1-based) of GUIDE, for reference:
#  1 # Field Guide          8 Then reboot.               14 ### Windows
#  3 Welcome to the guide.  10 ### Linux                 16 Use the MSI file.
#  5 ## Installation        12 Use the package manager.  18 ## Usage
#  7 Run the installer.                                  20 Start the app.


def _lines_of(text: str, section: Section) -> str:
    """The file's own lines in the section's 1-based inclusive range, as the section holds them."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(lines[section.line_start - 1 : section.line_end]).strip()


def _by_headings(sections: list[Section]) -> dict[tuple[str, ...], Section]:
    found: dict[tuple[str, ...], Section] = {}
    for section in sections:
        assert section.headings not in found, f"duplicate section {section.headings}"
        found[section.headings] = section
    return found


class TestSplitMarkdownHeadings:
    def test_headings_give_heading_paths_without_the_title(self) -> None:
        sections = split_markdown(GUIDE, "guides/field.md")

        assert [s.headings for s in sections] == [
            (),
            ("Installation",),
            ("Installation", "Linux"),
            ("Installation", "Windows"),
            ("Usage",),
        ]
        assert {s.title for s in sections} == {"Field Guide"}
        assert {s.path for s in sections} == {"guides/field.md"}

    def test_sibling_heading_resets_the_deeper_levels(self) -> None:
        sections = _by_headings(split_markdown(GUIDE, "field.md"))

        # "Windows" replaces "Linux" at level 3; "Usage" pops both level-3 headings.
        assert ("Installation", "Linux", "Windows") not in sections
        assert ("Installation", "Windows") in sections
        assert sections[("Usage",)].text == "Start the app."

    def test_heading_path_property_joins_title_and_headings(self) -> None:
        sections = _by_headings(split_markdown(GUIDE, "field.md"))

        assert sections[("Installation", "Linux")].heading_path == (
            "Field Guide > Installation > Linux"
        )
        assert sections[()].heading_path == "Field Guide"

    def test_inline_markup_is_removed_from_headings(self) -> None:
        text = (
            "# Title\n\n## The `config` file and [its options](https://x.test) **now**\n\nBody.\n"
        )

        (section,) = [s for s in split_markdown(text, "t.md") if s.headings]

        assert section.headings == ("The config file and its options now",)

    def test_setext_headings_are_headings(self) -> None:
        text = "Manual\n======\n\nIntro text.\n\nSetup Steps\n-----------\n\nDo this first.\n"

        sections = split_markdown(text, "manual.md")

        assert [(s.title, s.headings, s.text) for s in sections] == [
            ("Manual", (), "Intro text."),
            ("Manual", ("Setup Steps",), "Do this first."),
        ]
        assert [(s.line_start, s.line_end) for s in sections] == [(4, 4), (9, 9)]

    def test_file_without_headings_takes_its_title_from_the_file_name(self) -> None:
        text = "Just some notes.\n\nAnd a second paragraph.\n"

        (section,) = split_markdown(text, "notes/release-notes_2024.md")

        assert section.title == "Release notes 2024"
        assert section.headings == ()
        assert section.text == "Just some notes.\n\nAnd a second paragraph."
        assert (section.line_start, section.line_end) == (1, 3)

    def test_h2_before_any_h1_keeps_the_file_name_title(self) -> None:
        text = "## Overview\n\nFirst.\n\n# Later Top\n\nSecond.\n"

        sections = split_markdown(text, "mixed-doc.md")

        assert {s.title for s in sections} == {"Mixed doc"}
        assert [s.headings for s in sections] == [("Overview",), ("Later Top",)]


class TestSplitMarkdownLineRanges:
    def test_line_ranges_are_exact(self) -> None:
        sections = split_markdown(GUIDE, "field.md")

        assert [(s.headings, s.line_start, s.line_end) for s in sections] == [
            ((), 3, 3),
            (("Installation",), 7, 8),
            (("Installation", "Linux"), 12, 12),
            (("Installation", "Windows"), 16, 16),
            (("Usage",), 20, 20),
        ]

    def test_lines_at_the_range_are_the_section_text(self) -> None:
        sections = split_markdown(GUIDE, "field.md")

        assert sections
        for section in sections:
            assert section.text == _lines_of(GUIDE, section)
        assert _by_headings(sections)[("Installation",)].text == "Run the installer.\nThen reboot."

    def test_heading_line_is_not_part_of_the_body(self) -> None:
        for section in split_markdown(GUIDE, "field.md"):
            assert not any(line.startswith("#") for line in section.text.splitlines())


class TestSplitMarkdownFencedCode:
    @pytest.mark.parametrize("fence", ["```", "~~~", "````"])
    def test_comment_inside_a_fence_is_not_a_heading(self, fence: str) -> None:
        text = (
            "# Scripts\n"
            "\n"
            "## Deploy\n"
            "\n"
            f"{fence}bash\n"
            "# stop the service first\n"
            "systemctl stop app\n"
            "## also not a heading\n"
            f"{fence}\n"
            "\n"
            "After the block.\n"
        )

        sections = split_markdown(text, "scripts.md")

        assert [s.headings for s in sections] == [("Deploy",)]
        (deploy,) = sections
        assert "# stop the service first" in deploy.text
        assert "## also not a heading" in deploy.text
        assert deploy.text.endswith("After the block.")
        assert (deploy.line_start, deploy.line_end) == (5, 11)
        assert deploy.text == _lines_of(text, deploy)

    def test_fence_kept_whole_when_the_section_is_sliced(self) -> None:
        code = "\n".join(f"line_{i} = {i}  # comment {i}" for i in range(8))
        text = "# Code\n\n" + "Intro paragraph here.\n\n" * 10 + f"```python\n{code}\n```\n"

        sections = split_markdown(text, "code.md", max_chars=400, overlap_chars=50)

        assert len(sections) > 1
        holding = [s for s in sections if "```python" in s.text]
        assert len(holding) == 1
        assert code in holding[0].text
        assert holding[0].text.rstrip().endswith("```")
        assert all(s.headings == () for s in sections)


class TestSplitMarkdownFrontMatter:
    TEXT = (
        "---\n"
        "title: Travel Policy\n"
        "description: Rules for business trips\n"
        "tags: [travel, expenses]\n"
        "---\n"
        "# Travel Policy\n"
        "\n"
        "Book early.\n"
        "\n"
        "## Hotels\n"
        "\n"
        "Stay under budget.\n"
    )

    def test_front_matter_gives_the_title(self) -> None:
        sections = split_markdown(self.TEXT, "policies/travel.md")

        assert {s.title for s in sections} == {"Travel Policy"}
        assert [s.headings for s in sections] == [(), ("Hotels",)]

    def test_front_matter_is_not_in_any_body(self) -> None:
        sections = split_markdown(self.TEXT, "travel.md")

        for section in sections:
            assert "title:" not in section.text
            assert "description:" not in section.text
            assert "---" not in section.text

    def test_line_numbers_refer_to_the_original_file(self) -> None:
        sections = split_markdown(self.TEXT, "travel.md")

        assert [(s.line_start, s.line_end) for s in sections] == [(8, 8), (12, 12)]
        for section in sections:
            assert section.text == _lines_of(self.TEXT, section)

    def test_description_and_tags_go_into_the_lead(self) -> None:
        sections = split_markdown(self.TEXT, "travel.md")

        assert {s.lead for s in sections} == {
            "Rules for business trips travel expenses Book early."
        }

    @pytest.mark.parametrize(
        "front_matter",
        [
            pytest.param("title: [unclosed\n: : :", id="yaml-syntax-error"),
            pytest.param("\tindented: with a tab", id="tab-indent"),
            pytest.param("- just\n- a list", id="not-a-mapping"),
            pytest.param("title: ''", id="empty-title"),
            pytest.param("date: 2024-13-45", id="impossible-date"),
        ],
    )
    def test_malformed_front_matter_does_not_crash(self, front_matter: str) -> None:
        text = f"---\n{front_matter}\n---\nThe body stays.\n"
        body_line = text.split("\n").index("The body stays.") + 1

        sections = split_markdown(text, "broken-meta.md")

        assert [(s.title, s.text) for s in sections] == [("Broken meta", "The body stays.")]
        assert (sections[0].line_start, sections[0].line_end) == (body_line, body_line)


class TestSplitMarkdownEmptyInput:
    @pytest.mark.parametrize("text", ["", "\n", "   \n\t\n\n  ", "\r\n\r\n"])
    def test_blank_file_gives_no_sections(self, text: str) -> None:
        assert split_markdown(text, "blank.md") == []

    def test_heading_without_body_gives_no_section(self) -> None:
        sections = split_markdown("# Title\n\n## Empty\n\n## Full\n\nText.\n", "t.md")

        assert [s.headings for s in sections] == [("Full",)]


class TestSplitMarkdownLineEndings:
    @pytest.mark.parametrize("newline", ["\r\n", "\r"])
    def test_crlf_and_cr_give_the_same_sections_as_lf(self, newline: str) -> None:
        converted = GUIDE.replace("\n", newline)

        got = split_markdown(converted, "field.md")
        expected = split_markdown(GUIDE, "field.md")

        assert got == expected
        assert all("\r" not in s.text for s in got)


class TestSplitMarkdownLongSections:
    MAX = 1000
    OVERLAP = 200

    @staticmethod
    def _paragraphs(count: int) -> list[str]:
        # Short, distinct paragraphs of varying length (40-85 chars), well below the overlap.
        return [f"Fact {i:03d}: the value is {i * 7}." + " detail" * (i % 7) for i in range(count)]

    def test_long_section_is_sliced_within_max_chars(self) -> None:
        paragraphs = self._paragraphs(120)
        text = "# Report\n\n## Findings\n\n" + "\n\n".join(paragraphs) + "\n"

        sections = split_markdown(text, "report.md", max_chars=self.MAX, overlap_chars=self.OVERLAP)

        assert len(sections) >= 8
        assert all(len(s.text) <= self.MAX for s in sections)
        assert {s.headings for s in sections} == {("Findings",)}
        starts = [s.line_start for s in sections]
        assert starts == sorted(starts)

    def test_consecutive_slices_overlap(self) -> None:
        paragraphs = self._paragraphs(120)
        text = "# Report\n\n## Findings\n\n" + "\n\n".join(paragraphs) + "\n"

        sections = split_markdown(text, "report.md", max_chars=self.MAX, overlap_chars=self.OVERLAP)

        assert len(sections) > 1
        for previous, current in itertools.pairwise(sections):
            assert current.line_start <= previous.line_end
            first_paragraph = current.text.split("\n\n")[0]
            assert first_paragraph in previous.text

    def test_no_paragraph_is_lost(self) -> None:
        paragraphs = self._paragraphs(120)
        text = "# Report\n\n## Findings\n\n" + "\n\n".join(paragraphs) + "\n"

        sections = split_markdown(text, "report.md", max_chars=self.MAX, overlap_chars=self.OVERLAP)

        for paragraph in paragraphs:
            assert any(paragraph in s.text for s in sections), paragraph

    def test_slices_of_ordinary_paragraphs_are_cut_at_line_boundaries(self) -> None:
        # Paragraphs of 99 characters: five of them fill max_chars=500 exactly when only their
        # own lines are counted, but the blank lines between them make the slice longer.
        paragraphs = [f"P{i:02d} " + "x" * 95 for i in range(30)]
        text = "# Doc\n\n## Long\n\n" + "\n\n".join(paragraphs) + "\n"

        sections = split_markdown(text, "doc.md", max_chars=500, overlap_chars=150)

        assert all(len(s.text) <= 500 for s in sections)
        for section in sections:
            # Each slice is whole lines of the file: the range a citation shows is its text.
            assert section.text == _lines_of(text, section)
            assert section.text.startswith("P")

    def test_long_single_paragraph_is_split_at_line_boundaries(self) -> None:
        lines = [f"row {i:04d} of a very long table-like paragraph" for i in range(300)]
        text = "# T\n\n" + "\n".join(lines) + "\n"

        sections = split_markdown(text, "t.md", max_chars=800, overlap_chars=100)

        assert len(sections) > 1
        assert all(len(s.text) <= 800 for s in sections)
        covered = [line for s in sections for line in s.text.split("\n")]
        assert set(covered) == set(lines)


def _assert_windows_cover(windows: list[str], original: str, max_chars: int) -> None:
    """``windows`` are consecutive substrings of ``original`` that together cover all of it."""
    assert all(0 < len(w) <= max_chars for w in windows)
    position = 0  # everything before this offset is covered
    offset = -1
    for window in windows:
        # The last occurrence that starts after the previous window and at most at ``position``.
        offset = original.rfind(window, offset + 1, position + len(window))
        assert offset != -1, "a window is not a substring of the original"
        assert offset <= position, f"content lost between offsets {position} and {offset}"
        position = max(position, offset + len(window))
    assert position == len(original), f"content lost after offset {position} of {len(original)}"


@pytest.mark.slow
class TestSplitMarkdownHugeInput:
    @pytest.mark.parametrize(
        ("max_chars", "overlap_chars"),
        [
            pytest.param(1800, 200, id="default-settings"),
            pytest.param(1000, 0, id="no-overlap"),
            pytest.param(200, 150, id="overlap-above-half-of-max"),
        ],
    )
    def test_single_huge_line_is_cut_into_windows_without_loss(
        self, max_chars: int, overlap_chars: int
    ) -> None:
        # ~200 KB, no newline; numbered words make every window a unique substring.
        line = " ".join(f"w{i}" for i in range(40_000))[:200_001].strip()
        assert len(line) >= 200_000
        text = f"# Dump\n\n{line}\n"

        sections = split_markdown(text, "dump.md", max_chars=max_chars, overlap_chars=overlap_chars)

        assert len(sections) >= len(line) // max_chars
        assert {(s.line_start, s.line_end) for s in sections} == {(3, 3)}
        _assert_windows_cover([s.text for s in sections], line, max_chars)

    def test_huge_generated_file_is_split_with_every_slice_in_bounds(self) -> None:
        parts = ["# Handbook\n"]
        for i in range(4000):
            paragraphs = 20 if i % 10 == 0 else 5  # every tenth section is longer than max
            body = "\n\n".join(
                f"Section {i} paragraph {j}: " + "lorem ipsum dolor sit amet " * 8
                for j in range(paragraphs)
            )
            parts.append(f"## Section {i}\n\n{body}\n\n```\n# code {i}\n```\n")
        text = "\n".join(parts)
        assert len(text) > 5_000_000

        sections = split_markdown(text, "handbook.md", max_chars=1800, overlap_chars=200)

        assert all(len(s.text) <= 1800 for s in sections)
        assert {s.headings for s in sections} == {(f"Section {i}",) for i in range(4000)}
        assert len(sections) > 4000  # the long sections were sliced
        assert all(s.line_start <= s.line_end for s in sections)


class TestDecodeText:
    def test_utf8_is_decoded(self) -> None:
        assert decode_text("Zürich – café\n".encode()) == "Zürich – café\n"

    def test_byte_order_mark_is_dropped(self) -> None:
        assert decode_text(codecs.BOM_UTF8 + b"# Title\n") == "# Title\n"

    @pytest.mark.parametrize(
        "data",
        [
            pytest.param(b"caf\xe9 latin-1", id="latin-1"),
            pytest.param(b"\xff\xfe# utf-16", id="utf-16-bom"),
            pytest.param(b"ok then \x80", id="lone-continuation-byte"),
        ],
    )
    def test_invalid_utf8_raises(self, data: bytes) -> None:
        with pytest.raises(UndecodableFile, match="not valid UTF-8"):
            decode_text(data)

    def test_nul_bytes_raise(self) -> None:
        with pytest.raises(UndecodableFile, match="NUL"):
            decode_text(b"looks like text\x00but is binary")

    def test_undecodable_file_is_a_value_error(self) -> None:
        assert issubclass(UndecodableFile, ValueError)
