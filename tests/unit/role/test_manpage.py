"""docs/man/btrfs-backup.1 is what scripts/make-manpage.py makes from the CLI's parsers today."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_shipped_man_page_is_up_to_date():
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "make-manpage.py"), "--check"],
                         stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert run.returncode == 0, run.stderr
