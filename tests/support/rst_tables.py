"""The first column of the reStructuredText simple tables of a guide, under a given section title."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List

GUIDES = Path(__file__).resolve().parents[2] / "docs" / "docsite" / "rst"


def first_column(guide: str, section: str) -> List[str]:
    """The first cell of each body row of the first table after the heading `section` in `guide`."""
    lines = (GUIDES / guide).read_text().splitlines()
    start = lines.index(section)
    borders = [i for i in range(start, len(lines)) if re.fullmatch(r"=+( +=+)+", lines[i])][:3]
    width = len(lines[borders[0]].split(" ")[0])
    return [line[:width].strip() for line in lines[borders[1] + 1:borders[2]] if line.strip()]


def literals(cells: List[str]) -> List[str]:
    """The ``literal`` words of the cells, a `-x/--long ARG` literal split into its flags."""
    words = []
    for cell in cells:
        for literal in re.findall(r"``([^`]+)``", cell):
            words += literal.split(" ")[0].split("/")
    return words


def section(guide: str, title: str) -> str:
    """The text of the section headed `title` in `guide`, up to the next heading of its level or above."""
    lines = (GUIDES / guide).read_text().splitlines()
    levels: List[str] = []  # the adornment characters in the order the guide first uses them
    start = level = None
    for i, line in enumerate(lines[:-1]):
        under = lines[i + 1]
        if not line.strip() or not re.fullmatch(r"([=\-~^\"'`#*+.:_])\1+", under) or len(under) < len(line.strip()):
            continue
        if under[0] not in levels:
            levels.append(under[0])
        if start is None and line.strip() == title:
            start, level = i, levels.index(under[0])
        elif start is not None and levels.index(under[0]) <= level:
            return "\n".join(lines[start:i])
    if start is None:
        raise ValueError(f"{guide} has no section {title!r}")
    return "\n".join(lines[start:])
