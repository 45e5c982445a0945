"""Many source hosts pushing to one backup server at once, through the role's sshd configuration.

Each source has its own key, confined by its own `serve` forced command, and its own source
subvolume; all start their CLI runs at the same moment, as a fleet's timers do. The server's sshd
includes the drop-in the role renders (MaxStartups sized for the fleet). With a deliberately
tight MaxStartups, the engine's retries of a connection turned away still bring every run through.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from cli_helpers import CLI, assert_backup
from support.role_sshd import render_sshd_dropin
from support.sshd import Sshd
from support.tenant_keys import authorize_hosts, cli_ssh_flags
from support.trees import assert_same_tree, write_mixed_tree
from test_serve_ssh import require_sshd

SOURCES = 16
DROPPED_RE = re.compile(r"drop connection #\d+ from .* past MaxStartups")


def push_all_at_once(server, keys, sources, roots, timeout=300):
    """Start one CLI run per source together; {host: (status, result, stderr)} and the wall time."""
    started = time.monotonic()
    runs = {}
    for host, source in sources.items():
        argv = [str(CLI), "--json"] + cli_ssh_flags(server, keys[host]) + [
            str(source), server.url(roots[host] / "data")]
        runs[host] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
    done = {}
    for host, run in runs.items():
        out, err = run.communicate(timeout=timeout)
        done[host] = (run.returncode, json.loads(out) if out.strip() else None, err)
    return done, time.monotonic() - started


@pytest.fixture
def fleet(require_btrfs, make_fs, subvolume, tmp_path):
    """{host: source subvolume} (each with its own data) and {host: its folder on the server}."""
    require_sshd()
    server_fs = make_fs("server", size="1G")
    source_fs = make_fs("sources", size="1G")
    hosts = ["src%02d" % n for n in range(SOURCES)]
    sources, roots = {}, {}
    for number, host in enumerate(hosts):
        sources[host] = subvolume(source_fs / host)
        write_mixed_tree(sources[host], n_small=10, small_size=2048, large_files=[256 * 1024], seed=number)
        roots[host] = subvolume(server_fs / host)  # as the role makes each host's folder
    return sources, roots


def backup_server(tmp_path, dropin_text):
    dropin = tmp_path / "btrfs-backup.conf"
    dropin.write_text(dropin_text)
    return Sshd(host="127.0.0.7", max_startups=None, extra_config=["Include %s" % dropin])


def assert_all_backed_up(done, sources, roots, server):
    failed = {host: err[-2000:] for host, (status, result, err) in done.items()
              if status != 0 or result is None or result["failed"]}
    assert not failed, "%d of %d runs failed: %s\n--- sshd ---\n%s" % (
        len(failed), len(done), failed, server.log_tail(40))
    for host, (_status, result, _err) in done.items():
        name = result["snapshot"]["name"]
        snapshot = sources[host] / "snapshot" / name
        assert_backup(roots[host] / "data", snapshot)
        assert_same_tree(snapshot, roots[host] / "data" / name)


def retries(done):
    return sum(err.count("refused the connection") for _status, _result, err in done.values())


def test_sixteen_sources_push_at_once_through_the_roles_sshd(fleet, tmp_path):
    sources, roots = fleet
    dropin = render_sshd_dropin(SOURCES)
    assert "MaxStartups 42:30:164" in dropin
    with backup_server(tmp_path, dropin) as server:
        keys = authorize_hosts(server, CLI, roots, ["--append-only"])
        done, seconds = push_all_at_once(server, keys, sources, roots)
        dropped = DROPPED_RE.findall(server.log_file.read_text(errors="replace"))
        print("\n%d sources at once: %.1f s, %d succeeded, %d retries, %d connections dropped by sshd"
              % (SOURCES, seconds, sum(1 for s, r, _e in done.values() if s == 0), retries(done), len(dropped)))
        assert_all_backed_up(done, sources, roots, server)
        assert dropped == [], dropped


def test_a_tight_max_startups_is_ridden_out_by_retries(fleet, tmp_path):
    """MaxStartups 2:100:2: every unauthenticated connection beyond two is dropped. The engine
    tries its connection again (1, 2, 4 s with jitter) and says so; every run succeeds."""
    sources, roots = fleet
    hosts = sorted(sources)[:8]
    sources = {host: sources[host] for host in hosts}
    with backup_server(tmp_path, render_sshd_dropin(len(hosts), override="2:100:2")) as server:
        keys = authorize_hosts(server, CLI, {host: roots[host] for host in hosts}, ["--append-only"])
        done, seconds = push_all_at_once(server, keys, sources, roots)
        dropped = DROPPED_RE.findall(server.log_file.read_text(errors="replace"))
        print("\n%d sources, MaxStartups 2:100:2: %.1f s, %d succeeded, %d retries, %d dropped by sshd"
              % (len(hosts), seconds, sum(1 for s, r, _e in done.values() if s == 0), retries(done), len(dropped)))
        assert_all_backed_up(done, sources, roots, server)
        assert dropped and retries(done) > 0
        line = next(err for _s, _r, err in done.values() if "refused the connection" in err)
        assert re.search(r"ssh to 127\.0\.0\.7 refused the connection \(.+\); retrying in \d+\.\d s "
                         r"\(try [234] of 4\)", line), line
