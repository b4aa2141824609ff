"""Every figure the README quotes from a bench output file is in that file.

The convention: a README block (a paragraph, a table or a fenced block; blocks are separated by
blank lines) that names ``bench/NAME.txt`` or ``bench/NAME.py`` quotes ``bench/NAME.txt``, the
output that script printed, committed beside it; so do the tables and ``text`` blocks right after
it. In such a block every decimal number (``0.0253``, ``1.90``), ratio (``22.1x``) and fraction
(``18/20``) outside code spans must occur in the cited files as a number of its own (not inside a longer one;
thousands separators ignored); in a table every number does; and every line of a ``text`` block
must be a line of a cited file. A figure that no bench printed says so by naming no bench file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CITE = re.compile(r"bench/(\w+)\.(?:txt|py)\b")
QUOTED = re.compile(r"(?<![\w.,/])(?:\d[\d,]*\.\d+|\d[\d,]*(?:\.\d+)?x\b|\d+/\d+)(?![\d/])")
ANY_NUMBER = re.compile(r"(?<![\w.,/])\d[\d,]*(?:\.\d+)?(?:x\b|/\d+)?(?![\d/])")


def blocks(text: str) -> list[str]:
    """Paragraphs, tables and fenced blocks (a fenced block stays whole across blank lines)."""
    out, current, fenced = [], [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not line.strip() and not fenced:
            if current:
                out.append("\n".join(current))
            current = []
        else:
            current.append(line)
    if current:
        out.append("\n".join(current))
    return out


def quotes(text: str) -> list[tuple[str, list[str]]]:
    """(block, cited bench names) for every block that quotes bench output."""
    out, cited = [], []
    for block in blocks(text):
        names = list(dict.fromkeys(CITE.findall(block)))
        follows = block.startswith("|") or block.startswith("```text")
        if names:
            cited = names
        elif not (follows and cited):
            cited = []
        if cited:
            out.append((block, cited))
    return out


def plain(number: str) -> str:
    return number.replace(",", "").removesuffix("x")


def occurs(number: str, body: str) -> bool:
    n = plain(number)
    return re.search(rf"(?<![\d.]){re.escape(n)}(?![\d])", body) is not None


def missing_figures(text: str, read) -> list[str]:
    problems = []
    for block, names in quotes(text):
        body = "\n".join(read(n) for n in names).replace(",", "")
        if block.startswith("```text"):
            lines = set(line.rstrip() for line in "\n".join(read(n) for n in names).splitlines())
            problems += [f"bench/{names[0]}.txt lacks the line {line!r}" for line in block.splitlines()[1:-1]
                         if line.strip() and line.rstrip() not in lines]
            continue
        pattern = ANY_NUMBER if block.startswith("|") else QUOTED
        for number in pattern.findall(re.sub(r"`[^`]*`", "", block)):  # code spans hold arguments, not figures
            if not occurs(number, body):
                problems.append(f"{number} (quoted beside bench/{'.txt, bench/'.join(names)}.txt) is in none of them: "
                                f"{block[:80]!r}")
    return problems


def test_convention_catches_an_absent_figure():
    files = {"speed": "toggle 21.9x faster, n = 10000\nmean 0.0253 over 36 pairs, 18/20 flagged\n"}
    good = "As printed in `bench/speed.txt`: 21.9x at n = 10,000, mean 0.0253, 18/20.\n\nOther text 9.99x."
    assert missing_figures(good, files.__getitem__) == []
    for bad in ("As printed in `bench/speed.txt`: 22.1x.", "`bench/speed.py`: mean 0.025.",
                "`bench/speed.py` flagged 19/20.", "`bench/speed.py` below:\n\n```text\ntoggle 2.0x\n```"):
        assert missing_figures(bad, files.__getitem__), bad


def test_every_readme_figure_is_in_the_bench_output_it_cites():
    text = (ROOT / "README.md").read_text(encoding="utf-8")

    def read(name: str) -> str:
        path = ROOT / "bench" / f"{name}.txt"
        if not path.is_file():
            pytest.fail(f"README cites bench/{name}, which has no output file bench/{name}.txt")
        return path.read_text(encoding="utf-8")

    problems = missing_figures(text, read)
    assert not problems, "\n".join(problems)
