"""Run the collection's modules through real `ansible` / `ansible-playbook`, and look at btrfs as a user would.

Tests call modules through pytest-ansible's fixtures where they can (tests/integration/test_modules.py);
the runner here covers what its ad hoc calls do not offer: check and diff mode, module_defaults,
task environment, and the `ansible -a` command line itself.

Nothing here imports the engine: results come from Ansible's json callback, facts about subvolumes
from `btrfs subvolume show`.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent  # ansible-core is installed beside pytest
COPY_COLLECTION = REPO / "scripts" / "copy-collection.sh"
CALLBACK_PLUGINS = Path(__file__).resolve().parent / "callback_plugins"
LOCK_FILE = ".outstanding_transfers"
# The Python a Debian target host runs modules with: no venv, standard library only.
TARGET_PYTHON = "/usr/bin/python3"


def install_collection(parent: Path) -> Path:
    """Copy the collection to PARENT/ansible_collections/btrfs/backup; PARENT goes in ANSIBLE_COLLECTIONS_PATH."""
    subprocess.run([str(COPY_COLLECTION), str(parent)], check=True, stdout=subprocess.DEVNULL)
    return parent


class AnsibleRun(NamedTuple):
    """One ansible / ansible-playbook run: exit status, each task's result on localhost, output."""

    code: int
    results: List[dict]
    stdout: str
    stderr: str

    @property
    def result(self) -> dict:
        """The result of the only (or last) task."""
        return self.results[-1]

    def explain(self) -> str:
        return "exit status %d\n--- results ---\n%s\n--- stderr ---\n%s" % (
            self.code, json.dumps(self.results, indent=1)[:8000], self.stderr[-4000:])


class Ansible:
    """Runs plays and ad hoc commands against localhost (connection local) with the collection installed."""

    def __init__(self, collections_path: Path, workdir: Path):
        self.collections_path = collections_path
        self.workdir = workdir
        self.inventory = workdir / "inventory.ini"
        self.inventory.write_text(
            "localhost ansible_connection=local ansible_python_interpreter=%s\n" % TARGET_PYTHON)

    def environment(self, json_output: bool = True) -> Dict[str, str]:
        env = dict(os.environ)
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": str(self.collections_path),
            "ANSIBLE_HOME": str(self.workdir / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(self.workdir / "ansible-tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "PATH": "%s:%s" % (VENV_BIN, env.get("PATH", "")),
        })
        if json_output:
            # Also for ad hoc runs (LOAD_CALLBACK_PLUGINS): every task's result as JSON on stdout.
            env.update({"ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_PLUGINS), "ANSIBLE_STDOUT_CALLBACK": "task_results",
                        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"})
        return env

    def _run(self, argv: List[str], timeout: float) -> AnsibleRun:
        # cwd is the work dir, so that no ansible.cfg of the checkout or the user is picked up.
        proc = subprocess.run(argv, cwd=self.workdir, env=self.environment(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
                              check=False)
        try:
            output = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError("no JSON from %s (exit %d):\n%s\n%s" % (
                argv[0], proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
        results = [entry["result"] for entry in output["results"] if entry["host"] == "localhost"]
        return AnsibleRun(proc.returncode, results, proc.stdout, proc.stderr)

    def play(self, tasks: List[dict], check: bool = False, diff: bool = False,
             module_defaults: Optional[dict] = None, timeout: float = 300) -> AnsibleRun:
        """Run TASKS in one play on localhost (the playbook is JSON, which is YAML)."""
        play = {"name": "test", "hosts": "localhost", "gather_facts": False, "tasks": tasks}
        if module_defaults:
            play["module_defaults"] = module_defaults
        playbook = self.workdir / "playbook.yml"
        playbook.write_text(json.dumps([play], indent=1))
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory), str(playbook)]
        return self._run(argv + (["--check"] if check else []) + (["--diff"] if diff else []), timeout)

    def task(self, module: str, args: dict, check: bool = False, diff: bool = False, **keywords) -> AnsibleRun:
        """One task `btrfs.backup.MODULE: ARGS`, with task keywords such as `environment`."""
        task = {"name": module, "btrfs.backup." + module: args}
        task.update(keywords)
        return self.play([task], check=check, diff=diff)

    def adhoc(self, module: str, args: str, check: bool = False, timeout: float = 300) -> AnsibleRun:
        """`ansible localhost -m btrfs.backup.MODULE -a ARGS`, the way a person types it."""
        argv = [str(VENV_BIN / "ansible"), "localhost", "-i", str(self.inventory),
                "-m", "btrfs.backup." + module, "-a", args]
        return self._run(argv + (["--check"] if check else []), timeout)


def module_result(result) -> AnsibleRun:
    """A pytest-ansible ModuleResult of one host as an AnsibleRun (exit status 2 when it failed)."""
    data = dict(result)
    data["failed"] = bool(data.get("failed"))
    return AnsibleRun(2 if data["failed"] else 0, [data], "", "")


def key_values(args: Dict[str, object]) -> str:
    """ARGS as the `key=value` string of `ansible -a`, each value quoted for Ansible's parser."""
    return " ".join("%s=%s" % (key, shlex.quote(str(value))) for key, value in args.items())


# -- looking at btrfs -----------------------------------------------------------------------


class SubvolumeFacts(NamedTuple):
    uuid: str
    received_uuid: Optional[str]
    readonly: bool


def subvolume_facts(path) -> SubvolumeFacts:
    """What `btrfs subvolume show` says about PATH."""
    out = subprocess.run(["btrfs", "subvolume", "show", str(path)], check=True, stdout=subprocess.PIPE,
                         text=True, env=dict(os.environ, LC_ALL="C")).stdout
    fields = {}
    for line in out.splitlines()[1:]:
        key, sep, value = line.strip().partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    received = fields.get("Received UUID", "-")
    return SubvolumeFacts(fields["UUID"], None if received in ("-", "") else received,
                          "readonly" in fields.get("Flags", ""))


def subvolume_names(folder) -> List[str]:
    """The subvolumes directly inside FOLDER, sorted (a btrfs subvolume's root directory is inode 256)."""
    # stat(), not the directory entry's inode number: readdir reports another number for a subvolume.
    return sorted(entry.name for entry in os.scandir(folder)
                  if entry.is_dir(follow_symlinks=False) and os.lstat(entry.path).st_ino == 256)


def read_locks(folder) -> Optional[dict]:
    """The lock file's JSON, or None if there is none."""
    path = Path(folder) / LOCK_FILE
    return json.loads(path.read_text()) if path.exists() else None


def assert_is_backup_of(backup, snapshot) -> None:
    """A complete backup: read-only, and received from exactly this snapshot (by UUID)."""
    facts, source = subvolume_facts(backup), subvolume_facts(snapshot)
    assert facts.readonly, "%s is not read-only" % backup
    assert facts.received_uuid == source.uuid, "%s: received_uuid %s, snapshot uuid %s" % (
        backup, facts.received_uuid, source.uuid)
