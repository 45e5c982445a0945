"""Every option of every btrfs-backup command is in the CLI guide, and every parameter of every module in the
modules guide. The options come from the parsers and the modules' argument specs, so a new one fails here
until its guide names it."""

import importlib
import re
import sys
import tempfile
from pathlib import Path

import pytest

from engine.frontends import cli
from support.rst_tables import first_column, literals, section

ROOT = Path(__file__).resolve().parents[3]
MODULES = sorted(path.stem for path in (ROOT / "plugins" / "modules").glob("*.py") if path.stem != "__init__")

BACKUP_RUN_TABLE = "Options (btrfs-backup 0.3's, plus a few)"


def _flags(parser):
    return sorted(flag for action in parser._actions for flag in action.option_strings)


def _command_heading(command: str) -> str:
    return f"``btrfs-backup {command}``"


def _listed(heading: str) -> list:
    """The options in the first column of the table under `heading` in the CLI guide."""
    try:
        return literals(first_column("cli.rst", heading))
    except ValueError:
        pytest.fail(f"docs/docsite/rst/cli.rst has no section {heading} with a table of its options: add one "
                    f"under 'Every command and its options'")


@pytest.mark.parametrize("flag", _flags(cli.build_backup_parser()))
def test_every_option_of_a_backup_run_is_in_the_cli_guides_table(flag):
    assert flag in _listed(BACKUP_RUN_TABLE), (
        f"btrfs-backup {flag} is not in docs/docsite/rst/cli.rst: add it to the first column of the "
        f"table under {BACKUP_RUN_TABLE!r}")


@pytest.mark.parametrize("command, flag", [(name, flag) for name, build in cli.COMMAND_PARSERS.items()
                                           for flag in _flags(build())])
def test_every_option_of_every_command_is_in_its_table_in_the_cli_guide(command, flag):
    heading = _command_heading(command)
    assert flag in _listed(heading), (
        f"btrfs-backup {command} {flag} is not in docs/docsite/rst/cli.rst: add it to the first column of "
        f"the table under the heading {heading}")


@pytest.mark.parametrize("command", [None] + list(cli.COMMAND_PARSERS))
def test_the_cli_guide_lists_no_option_that_a_command_does_not_have(command):
    parser = cli.COMMAND_PARSERS[command]() if command else cli.build_backup_parser()
    listed = set(_listed(_command_heading(command) if command else BACKUP_RUN_TABLE))
    unknown = sorted(listed - set(_flags(parser)))
    assert not unknown, f"docs/docsite/rst/cli.rst lists options btrfs-backup {command or ''} does not have: {unknown}"


class _CollectionOnPath:
    """sys.path with a folder in which ansible_collections/btrfs/backup is this checkout, for the imports."""

    def __enter__(self):
        self.tmp = tempfile.TemporaryDirectory()
        folder = Path(self.tmp.name) / "ansible_collections" / "btrfs"
        folder.mkdir(parents=True)
        (folder / "backup").symlink_to(ROOT)
        sys.path.insert(0, self.tmp.name)

    def __exit__(self, *exc):
        sys.path.remove(self.tmp.name)
        self.tmp.cleanup()


def _argument_specs():
    """Each module's argument_spec(), from the module imported as Ansible imports it."""
    if ROOT.parts[-3:] == ("ansible_collections", "btrfs", "backup"):  # ansible-test's copy: importable as it is
        sys.path.insert(0, str(ROOT.parents[2]))
        return {m: importlib.import_module(f"ansible_collections.btrfs.backup.plugins.modules.{m}").argument_spec()
                for m in MODULES}
    with _CollectionOnPath():
        return {m: importlib.import_module(f"ansible_collections.btrfs.backup.plugins.modules.{m}").argument_spec()
                for m in MODULES}


SPECS = _argument_specs()
# Parameters every module has (the ssh settings): the guide describes them once, before the modules' sections.
SHARED = set.intersection(*(set(spec) for spec in SPECS.values()))


def _names_parameter(text: str, module: str, parameter: str) -> bool:
    return f"``{parameter}``" in text or bool(re.search(
        r":ansopt:`(?:[^`<]*<)?btrfs\.backup\.%s#module:%s[=>`]" % (module, parameter), text))


def _before_the_modules_sections(guide: str) -> str:
    lines = guide.splitlines()
    return "\n".join(lines[:min(i for i, line in enumerate(lines) if line in {f"``{m}``" for m in MODULES})])


@pytest.mark.parametrize("module, parameter", [(m, p) for m in MODULES for p in sorted(SPECS[m])])
def test_every_module_parameter_is_in_the_modules_guide(module, parameter):
    if parameter in SHARED:
        shared_part = _before_the_modules_sections((ROOT / "docs" / "docsite" / "rst" / "modules.rst").read_text())
        assert _names_parameter(shared_part, module, parameter), (
            f"{parameter} (a parameter of every module) is not in docs/docsite/rst/modules.rst: name it "
            f"(``{parameter}``) where the guide says what every module shares, before the modules' sections")
    else:
        try:
            own_section = section("modules.rst", f"``{module}``")
        except ValueError:
            pytest.fail(f"docs/docsite/rst/modules.rst has no section ``{module}``: add one that names its parameters")
        assert _names_parameter(own_section, module, parameter), (
            f"{module}'s parameter {parameter} is not in docs/docsite/rst/modules.rst: name it "
            f"(``{parameter}`` or :ansopt:`btrfs.backup.{module}#module:{parameter}`) in the section ``{module}``")
