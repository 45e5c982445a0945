"""The shipped Prometheus alert rules, checked and tested on synthetic series with promtool."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "roles/btrfs_backup/files/btrfs-backup-alerts.rules.yml"
TESTS = Path(__file__).resolve().parent / "prometheus" / "alerts_test.yml"

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None,
                                reason="promtool (Debian package prometheus) not installed")


def promtool(*args, cwd=None):
    done = subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_rules_are_valid():
    assert "SUCCESS: 7 rules found" in promtool("check", "rules", str(RULES))


def test_rules_fire_as_the_tests_expect():
    assert "SUCCESS" in promtool("test", "rules", TESTS.name, cwd=TESTS.parent)
