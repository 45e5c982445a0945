"""The command's start-up: a run with nothing to send is as fast as its imports, so the CLI loads
only what every run needs; what some runs need is imported where it is used."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

MODULE_UTILS = Path(__file__).resolve().parents[4] / "plugins" / "module_utils"

# Costly to import and needed by some runs only (a digest, a send, a pull, a status view).
NOT_AT_START = ["typing", "dataclasses", "hashlib", "subprocess", "socket", "inspect", "ast",
                "concurrent.futures", "selectors", "email", "http", "urllib.request", "shutil", "zlib",
                # the send machinery: a run with nothing to send never loads it
                "engine.run.sending", "engine.run.transfer", "engine.run.staged_send",
                "engine.host.compressibility", "engine.host.stream_size", "engine.host.staging",
                "engine.host.streams", "engine.host.pipeline", "engine.host.capabilities",
                # notifications are sent by the runs of a job that has a ping or ntfy URL
                "engine.host.notify",
                # a job's archive stores and an ssh destination's survey: loaded by the runs that have them
                "engine.host.endpoints.archive", "engine.host.archive_exec", "engine.host.destination_survey",
                # what only a run with an ssh or shell end uses: its quoting, sshd's refusals, the shell kind
                "shlex", "engine.model.ssh_retry", "engine.host.endpoints.shell",
                # logging and what it loads: the first message that may be shown loads them (model/log.py)
                "logging", "traceback", "tokenize", "threading"]

_LOADED = """
import json, sys
before = set(sys.modules)
sys.path.insert(0, sys.argv[1])
from engine.frontends.cli import run
print(json.dumps(sorted(set(sys.modules) - before)))
"""


@pytest.fixture(scope="module")
def loaded_by_cli():
    # -I as the launcher does: a fresh interpreter, nothing from the test run already imported.
    out = subprocess.run([sys.executable, "-I", "-c", _LOADED, str(MODULE_UTILS)],
                         check=True, capture_output=True, text=True).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("module", NOT_AT_START)
def test_the_command_does_not_import_at_start(loaded_by_cli, module):
    how = ("import it inside the function that needs it" if module != "typing" else
           "import typing's names under the guard the engine's modules use: "
           "TYPE_CHECKING = False / if TYPE_CHECKING: from typing import ...")
    assert module not in loaded_by_cli, "the CLI imports %s at start: %s" % (module, how)


def test_the_check_sees_what_the_command_imports(loaded_by_cli):
    # Without this, an import failure or an empty set would pass every case above.
    assert {"engine.frontends.cli", "engine.run.job", "argparse"} <= loaded_by_cli


ENGINE = MODULE_UTILS / "engine"


def _engine_trees():
    import ast
    for path in sorted(ENGINE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def test_the_engine_works_without_docstrings_and_asserts():
    # The launcher runs python3 -OO: docstrings are gone and asserts do not run.
    import ast
    found = []
    for path, tree in _engine_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Assert):
                found.append("%s:%d: assert" % (path.relative_to(ENGINE), node.lineno))
            elif isinstance(node, ast.Attribute) and node.attr == "__doc__" and isinstance(node.ctx, ast.Load):
                found.append("%s:%d: reads __doc__" % (path.relative_to(ENGINE), node.lineno))
    assert not found, "the CLI runs under python -OO; use an if and raise, or a string of its own: %s" % found


def test_the_launcher_runs_the_engine_isolated_without_site_and_docstrings():
    launcher = (MODULE_UTILS.parents[1] / "roles" / "btrfs_backup" / "files" / "btrfs-backup").read_text()
    assert "exec python3 -I -S -OO -c" in launcher
    commands = [line for line in launcher.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in commands if "$(" in line], "each $(...) is a process of every run"


def test_the_launcher_holds_the_garbage_collector_until_the_engine_is_imported():
    launcher = (MODULE_UTILS.parents[1] / "roles" / "btrfs_backup" / "files" / "btrfs-backup").read_text()
    body = launcher[launcher.index("exec python3"):]
    disabled, imported = body.index("gc.disable()"), body.index("from engine.frontends.cli import run")
    frozen, enabled, ran = body.index("gc.freeze()"), body.index("gc.enable()"), body.index("run()", imported + 40)
    assert disabled < imported < frozen < enabled < ran, "collect nothing while importing, then freeze what was imported"
