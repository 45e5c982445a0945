"""docs/man/btrfs-backup.1 is what scripts/make-manpage.py makes from the CLI's parsers today."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_shipped_man_page_is_up_to_date():
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "make-manpage.py"), "--check"],
                         stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert run.returncode == 0, run.stderr


def test_the_man_page_has_every_command_and_each_of_its_options():
    from engine.frontends import cli
    page = (REPO / "docs" / "man" / "btrfs-backup.1").read_text()
    parsers = dict(cli.COMMAND_PARSERS, **{"": cli.build_backup_parser})
    for name, build in parsers.items():
        assert not name or ".SS %s\n" % name in page, "the man page has no section for %s" % name
        for flag in (flag for action in build()._actions for flag in action.option_strings):
            assert "\\fB%s\\fR" % flag.replace("-", "\\-") in page, "btrfs-backup %s %s" % (name, flag)
