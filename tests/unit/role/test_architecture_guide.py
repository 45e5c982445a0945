"""The architecture guide lists every file of the engine, one line each, under its layer's folder."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ENGINE = ROOT / "plugins/module_utils/engine"
GUIDE = ROOT / "docs/docsite/rst/architecture.rst"

# In the guide's tree: a folder line (its path inside the engine, `host/` or `host/endpoints/`, and what it
# holds), then a line each for its files, indented further.
_FOLDER = re.compile(r"^ {5,}([a-z_/]+)/\s{2,}\S")
_FILE = re.compile(r"^ {7,}([a-z_]+\.py)\s{2,}(\S.*)$")


def _engine_files():
    return sorted(str(path.relative_to(ENGINE)) for path in ENGINE.rglob("*.py")
                  if path.name != "__init__.py" and "__pycache__" not in path.parts)


def _guide_entries():
    lines = GUIDE.read_text().splitlines()
    start = lines.index("   plugins/module_utils/engine/     the engine, stdlib only, importable on its own")
    entries, folder = [], None
    for line in lines[start + 1:]:
        if not line.startswith("     "):
            break
        folder_match, file_match = _FOLDER.match(line), _FILE.match(line)
        if folder_match:
            folder = folder_match.group(1)
        elif file_match:
            entries.append((f"{folder}/{file_match.group(1)}", file_match.group(2)))
        else:
            raise AssertionError(f"a line of the engine's tree that is neither a folder nor a file: {line!r}")
    return entries


def test_the_guide_lists_every_engine_file_once_and_nothing_else():
    listed = [path for path, _ in _guide_entries()]
    assert len(listed) == len(set(listed)), "listed twice: %s" % sorted({p for p in listed if listed.count(p) > 1})
    assert sorted(listed) == _engine_files()


def test_every_listed_file_says_what_it_holds():
    for path, what in _guide_entries():
        assert len(what.split()) >= 3, f"{path}: say in a few words what the file holds"


def test_every_folder_of_the_engine_is_described_in_the_guide_and_its_init_is_empty():
    """The guide says what each folder holds; its `__init__.py` stays empty (ansible-test's empty-init
    rule for module_utils), so a package exports nothing and callers import from the file itself."""
    described = {line.split()[0].rstrip("/") for line in GUIDE.read_text().splitlines() if _FOLDER.match(line)}
    for init in sorted(ENGINE.rglob("__init__.py")):
        folder = init.parent.relative_to(ENGINE)
        assert init.read_text() == "", f"{init.relative_to(ROOT)} must be empty"
        assert str(folder) == "." or str(folder) in described, f"the guide does not describe {folder}/"
