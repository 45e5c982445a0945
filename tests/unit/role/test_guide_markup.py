"""The guides' markup builds cleanly on the docs site: every literal block names its language, no inline
markup is nested, no list line is glued to a paragraph, and every picture travels inside its guide."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from docutils import nodes
from docutils.core import publish_doctree

ROOT = Path(__file__).resolve().parents[3]
GUIDES = sorted((ROOT / "docs" / "docsite" / "rst").glob("*.rst"))


def _lines(guide):
    return list(enumerate(guide.read_text().splitlines(), start=1))


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_every_literal_block_names_its_language(guide):
    # A bare `::` block is highlighted in the site's default language (YAML+Jinja), and fails where it
    # is no YAML.
    bare = [n for n, line in _lines(guide) if line.rstrip().endswith("::") and not line.lstrip().startswith(".. ")]
    assert not bare, f"{guide.name}, lines {bare}: write `.. code-block:: text` (or sh, yaml, ini) instead of `::`"


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_no_inline_markup_is_nested(guide):
    nested = [n for n, line in _lines(guide) if re.search(r"\*\*``|``\*\*", line)]
    assert not nested, f"{guide.name}, lines {nested}: reStructuredText shows ``literal`` inside ** as raw markup"


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_no_list_line_is_part_of_a_paragraph(guide):
    tree = publish_doctree(guide.read_text(), settings_overrides={"report_level": 5, "halt_level": 5})
    glued = [(paragraph.line, line.strip()) for paragraph in tree.findall(nodes.paragraph)
             for line in paragraph.rawsource.splitlines()[1:] if re.match(r"\s*([-*+]|\d+\.)\s+\S", line)]
    assert not glued, f"{guide.name}: a list line inside a paragraph (add a blank line before it): {glued}"


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_pictures_travel_inside_the_guide(guide):
    # The docs site copies the .rst files only: a picture named by a path is missing there.
    by_path = [n for n, line in _lines(guide) if re.match(r"\s*\.\. (image|figure)::", line) and "data:" not in line]
    assert not by_path, f"{guide.name}, lines {by_path}: embed the picture (see scripts/embed-images.py)"


def test_embedded_pictures_are_up_to_date():
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "embed-images.py"), "--check"],
                         stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert run.returncode == 0, run.stderr
