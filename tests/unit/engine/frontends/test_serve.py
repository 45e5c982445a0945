"""engine.frontends.serve: which SSH_ORIGINAL_COMMAND lines a source host's restricted key may run."""

import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from engine.host import btrfs
from engine.host.endpoints.ssh import SshEndpoint
from engine.host.listing import listing_commands
from engine.frontends import serve as serve_module
from engine.host import refusal_counter
from engine.host.capabilities import end_tools_from, progs_version
from engine.model.server_mode import MODE_PROBE, SERVE_FEATURES, features_line, parse_features, parse_mode, serve_answer
from engine.frontends.serve import (APPEND_ONLY, EXIT_REFUSED, REFUSAL_KINDS, Operation, Refused, Server, on_its_disk,
                          append_only_refusal, complete_backup_refusal, filter_listing,
                          decompress_failure, parse_request, pipe_status)

ROOT = "/srv/backups/web1"
MARKER = "__btrfs_backup_0123456789abcdef0123456789abcdef__"


def batch_line(commands, sudo=False, marker=MARKER):
    """The exact line SshEndpoint.run_batch sends (same code path, fixed marker)."""
    endpoint = SshEndpoint("nas", "/x", sudo=sudo)
    return "; ".join("%s; printf '\\n%s %%d\\n' $?" % (endpoint.remote_line(argv, privileged), marker)
                     for argv, privileged in commands)


def single_line(argv, sudo=False):
    return SshEndpoint("nas", "/x", sudo=sudo).remote_line(argv)


def compressed_line(folder, sudo=False, debug=False):
    """The compressed receive: zstd unprivileged, receive as any other (quoted word by word)."""
    endpoint = SshEndpoint("nas", "/x", sudo=sudo)
    return "%s | %s" % (endpoint.remote_line(["zstd", "-d", "-q"], False),
                        endpoint.remote_line(btrfs.receive_argv(folder, debug=debug)))


# -- accepted: what the engine really sends to a push destination -------------------------------

@pytest.mark.parametrize("sudo", [False, True], ids=["plain", "ssh-sudo"])
@pytest.mark.parametrize("argv, expected", [
    pytest.param(btrfs.receive_argv(ROOT + "/root"), Operation("receive", [ROOT + "/root"]),
                 id="receive"),
    pytest.param(btrfs.receive_argv(ROOT + "/root", debug=True),
                 Operation("receive", [ROOT + "/root"], ["-vv"]), id="receive-debug"),
    pytest.param(btrfs.receive_argv(ROOT), Operation("receive", [ROOT]), id="receive-into-root"),
    pytest.param(["mkdir", "--", ROOT + "/root"], Operation("mkdir", [ROOT + "/root"]), id="mkdir"),
    pytest.param(["mkdir", "-p", "--", ROOT + "/a/b"], Operation("mkdir", [ROOT + "/a/b"], ["-p"]),
                 id="mkdir-p"),
    pytest.param(btrfs.delete_argv([ROOT + "/root/20260101-000000"]),
                 Operation("delete", [ROOT + "/root/20260101-000000"]), id="delete"),
    pytest.param(btrfs.delete_argv([ROOT + "/r/a-20260101-000000", ROOT + "/r/a-20260102-000000"],
                                   commit=True),
                 Operation("delete", [ROOT + "/r/a-20260101-000000", ROOT + "/r/a-20260102-000000"],
                           ["-c"]), id="delete-several-commit"),
    pytest.param(btrfs.sync_argv(ROOT + "/root"), Operation("sync", [ROOT + "/root"]), id="sync"),
    pytest.param(btrfs.set_writable_argv(ROOT + "/root/x"), Operation("writable", [ROOT + "/root/x"]),
                 id="convert-rw"),
    pytest.param(btrfs.set_writable_argv(ROOT + "/root/x", force=True),
                 Operation("writable", [ROOT + "/root/x"], ["-f"]), id="convert-rw-force"),
    pytest.param(["test", "-e", ROOT + "/root"], Operation("test", [ROOT + "/root"]), id="test-e"),
    pytest.param(["zstd", "--version"], Operation("zstd_version"), id="zstd-version"),
    pytest.param(["btrfs", "--version"], Operation("btrfs_version"), id="btrfs-version"),
])
def test_single_commands_the_engine_sends_are_accepted(argv, expected, sudo):
    request = parse_request(single_line(argv, sudo), ROOT)
    assert request.marker is None
    assert request.operations == [expected]


@pytest.mark.parametrize("sudo", [False, True], ids=["plain", "ssh-sudo"])
def test_the_listing_batch_is_accepted(sudo):
    folder = ROOT + "/root"
    request = parse_request(batch_line(listing_commands(folder), sudo), ROOT)
    assert request.marker == MARKER
    assert request.operations == [
        Operation("readlink", [folder]),
        Operation("mountinfo"),
        Operation("list", [folder]),
        Operation("list", [folder], ["-r"]),
    ]


@pytest.mark.parametrize("sudo", [False, True], ids=["plain", "ssh-sudo"])
@pytest.mark.parametrize("folder, debug, expected", [
    pytest.param(ROOT + "/root", False, Operation("receive", [ROOT + "/root"], decompress=True),
                 id="receive"),
    pytest.param(ROOT + "/root", True, Operation("receive", [ROOT + "/root"], ["-vv"], decompress=True),
                 id="receive-debug"),
    pytest.param(ROOT, False, Operation("receive", [ROOT], decompress=True), id="receive-into-root"),
])
def test_the_compressed_receive_is_accepted(folder, debug, expected, sudo):
    request = parse_request(compressed_line(folder, sudo, debug), ROOT)
    assert request.marker is None
    assert request.operations == [expected]


@pytest.mark.parametrize("sudo", [False, True], ids=["plain", "ssh-sudo"])
def test_the_probes_of_a_destination_are_accepted_as_one_batch(sudo):
    """What EndToolsProbe sends to a destination, the mode probe with the version probes."""
    request = parse_request(batch_line([(["btrfs", "--version"], True), (["zstd", "--version"], False),
                                        (MODE_PROBE, False)], sudo), ROOT)
    assert request.operations == [Operation("btrfs_version"), Operation("zstd_version"), Operation("mode")]


@pytest.mark.parametrize("sudo", [False, True], ids=["plain", "ssh-sudo"])
def test_the_capability_probes_are_accepted_as_a_batch(sudo):
    request = parse_request(batch_line([(["zstd", "--version"], False), (["btrfs", "--version"], True)],
                                       sudo), ROOT)
    assert request.marker == MARKER
    assert request.operations == [Operation("zstd_version"), Operation("btrfs_version")]


def test_the_listing_batch_of_the_parent_folder_is_accepted():
    # A missing destination folder makes the engine list its parent: here, the root itself.
    request = parse_request(batch_line(listing_commands(ROOT)), ROOT)
    assert [op.op for op in request.operations] == ["readlink", "mountinfo", "list", "list"]


def test_a_trailing_slash_is_the_same_folder():
    assert parse_request("btrfs receive %s/root/" % ROOT, ROOT).operations == [
        Operation("receive", [ROOT + "/root"])]


# -- the receive that creates its own folder: `mkdir -p -- F && [zstd -d -q |] btrfs receive F` --------

def receiver_line(folder, compress=True, sudo=False, debug=False, create=False, arrival=None, guarded=None):
    """The exact line SshEndpoint.receiver sends: `create`, when the receive's command creates its
    folder; `arrival`, when it also asks what arrived under that name (a plain ssh host's);
    `guarded`, the filesystem id it checks first (a receive planned on the job's last run there)."""
    endpoint = SshEndpoint("nas", folder, sudo=sudo)
    endpoint.expect_filesystem = guarded
    if create:
        endpoint.create_in_next_command(folder)
    decompress = ["zstd", "-d", "-q"] if compress else None
    return endpoint.receiver(debug, decompress, arrival=arrival)[1][-1]


def folder_making_line(folder, compress=True, sudo=False, debug=False):
    return receiver_line(folder, compress, sudo, debug, create=True)


def refused_kind(line) -> str:
    """The kind of serve's refusal of `line` (it must be refused)."""
    with pytest.raises(Refused) as refused:
        parse_request(line, ROOT)
    return refused.value.kind


@pytest.mark.parametrize("sudo", [False, True], ids=["plain", "ssh-sudo"])
@pytest.mark.parametrize("compress, debug, flags", [
    pytest.param(True, False, [], id="compressed"),
    pytest.param(False, False, [], id="plain-stream"),
    pytest.param(True, True, ["-vv"], id="compressed-debug"),
])
def test_a_receive_that_creates_its_folder_is_accepted(compress, debug, flags, sudo):
    folder = ROOT + "/home"
    line = folder_making_line(folder, compress, sudo, debug)
    assert line.count("&&") == 1 and line.startswith(("mkdir -p -- ", "sudo -n mkdir -p -- ")), line
    request = parse_request(line, ROOT)
    assert request.marker is None and request.chained
    assert request.operations == [Operation("mkdir", [folder], ["-p"]),
                                  Operation("receive", [folder], flags, decompress=compress)]


FOLDER = ROOT + "/home"
RECEIVE = "zstd -d -q | btrfs receive " + FOLDER

FOLDER_MAKING_REFUSED = [
    # The mkdir may only create the receive's own folder, below the key's root, as a mkdir alone.
    ("mkdir-of-another-folder", "mkdir -p -- %s/other && %s" % (ROOT, RECEIVE), "path"),
    ("mkdir-of-a-subfolder", "mkdir -p -- %s/x && %s" % (FOLDER, RECEIVE), "path"),
    ("mkdir-of-the-parent", "mkdir -p -- %s && zstd -d -q | btrfs receive %s/x" % (FOLDER, FOLDER), "path"),
    ("mkdir-of-the-root", "mkdir -p -- %s && btrfs receive %s" % (ROOT, ROOT), "path"),
    ("mkdir-outside", "mkdir -p -- /srv/backups/web2/home && btrfs receive /srv/backups/web2/home", "path"),
    ("mkdir-dotdot", "mkdir -p -- %s/../web2 && btrfs receive %s/../web2" % (ROOT, ROOT), "path"),
    ("mkdir-hidden", "mkdir -p -- %s/.ssh && btrfs receive %s/.ssh" % (ROOT, ROOT), "path"),
    ("mkdir-expansion", "mkdir -p -- $HOME && %s" % RECEIVE, "command"),
    ("mkdir-without-p", "mkdir -- %s && %s" % (FOLDER, RECEIVE), "command"),
    ("mkdir-mode", "mkdir -p -m 777 -- %s && %s" % (FOLDER, RECEIVE), "command"),
    ("mkdir-extra-word", "mkdir -p -- %s %s/x && %s" % (FOLDER, FOLDER, RECEIVE), "command"),
    ("receive-extra-word", "mkdir -p -- %s && btrfs receive %s %s" % (FOLDER, FOLDER, FOLDER), "command"),
    ("receive-from-file", "mkdir -p -- %s && btrfs receive -f /etc/shadow %s" % (FOLDER, FOLDER), "command"),
    ("zstd-extra-word", "mkdir -p -- %s && zstd -d -q -T0 | btrfs receive %s" % (FOLDER, FOLDER), "command"),
    # `&&` anywhere else, or more of it.
    ("receive-then-mkdir", "btrfs receive %s && mkdir -p -- %s" % (FOLDER, FOLDER), "command"),
    ("compressed-receive-then-mkdir", "%s && mkdir -p -- %s" % (RECEIVE, FOLDER), "command"),
    ("readlink-then-receive", "readlink -e -- %s && %s" % (FOLDER, RECEIVE), "command"),
    ("mkdir-then-delete", "mkdir -p -- %s && btrfs subvolume delete -- %s/x" % (FOLDER, FOLDER), "command"),
    ("mkdir-then-mkdir", "mkdir -p -- %s && mkdir -p -- %s" % (FOLDER, FOLDER), "command"),
    ("mkdir-twice-then-receive", "mkdir -p -- %s && mkdir -p -- %s && %s" % (FOLDER, FOLDER, RECEIVE), "command"),
    ("receive-then-answer", "mkdir -p -- %s && %s && printf '\\n%%s\\n' btrfs-backup-arrived" % (FOLDER, RECEIVE),
     "command"),
    ("mkdir-then-staging", "mkdir -p -- %s && zstd -d -q | btrfs-backup-stage land %s/x" % (FOLDER, FOLDER),
     "command"),
    ("and-and-alone", "&& %s" % RECEIVE, "command"),
    ("and-and-at-end", "mkdir -p -- %s &&" % FOLDER, "command"),
    # Other operators beside it.
    ("semicolon-after", "mkdir -p -- %s && %s; id" % (FOLDER, RECEIVE), "command"),
    ("semicolon-before", "id; mkdir -p -- %s && %s" % (FOLDER, RECEIVE), "command"),
    ("semicolon-instead", "mkdir -p -- %s; %s" % (FOLDER, RECEIVE), "command"),
    ("or-or-after", "mkdir -p -- %s && %s || id" % (FOLDER, RECEIVE), "command"),
    ("or-or-instead", "mkdir -p -- %s || %s" % (FOLDER, RECEIVE), "command"),
    ("background-instead", "mkdir -p -- %s & %s" % (FOLDER, RECEIVE), "command"),
    ("pipe-before", "echo | mkdir -p -- %s && %s" % (FOLDER, RECEIVE), "command"),
    ("redirect-after", "mkdir -p -- %s && %s > /tmp/x" % (FOLDER, RECEIVE), "command"),
    ("newline-instead", "mkdir -p -- %s\n%s" % (FOLDER, RECEIVE), "command"),
]


@pytest.mark.parametrize("line, kind", [(line, kind) for _id, line, kind in FOLDER_MAKING_REFUSED],
                         ids=[i for i, _line, _kind in FOLDER_MAKING_REFUSED])
def test_only_the_receives_own_folder_may_be_made_before_it(line, kind):
    assert refused_kind(line) == kind


def test_a_restore_key_runs_no_receive_that_makes_its_folder():
    with pytest.raises(Refused):
        parse_request(folder_making_line(FOLDER), ROOT, restore=True)


# -- a plain ssh host's receive, which also asks what arrived (`RECEIVE && printf ... && { show || :; }`) --
# serve declines it: it would hold the root's lock until its stream came, while the source that
# started it waits for its survey, which needs the same lock.

def asking_line(folder, compress=True, sudo=False, create=False, guarded=None):
    """The exact line SshEndpoint.receiver sends to a plain ssh host: a source that last sent to
    one here starts it before it learns that this key runs serve."""
    return receiver_line(folder, compress, sudo, create=create, arrival="20261205-120000", guarded=guarded)


@pytest.mark.parametrize("sudo", [False, True], ids=["plain", "ssh-sudo"])
@pytest.mark.parametrize("compress, create, guarded", [
    pytest.param(True, False, None, id="compressed"),
    pytest.param(False, False, None, id="plain-stream"),
    pytest.param(True, True, None, id="compressed-making-its-folder"),
    pytest.param(True, False, "a1b2c3d4e5f60718", id="compressed-checking-its-filesystem"),
    pytest.param(False, False, "a1b2c3d4e5f60718", id="plain-stream-checking-its-filesystem"),
])
def test_a_plain_hosts_receive_is_declined_not_refused(compress, create, guarded, sudo):
    """A source that last sent here through a shell starts it once before its survey says this is
    serve: declined (its own kind, which is logged at info and not counted), never run."""
    line = asking_line(FOLDER, compress, sudo, create, guarded)
    assert "btrfs-backup-arrived" in line and line.endswith("|| :; }"), line
    assert ("{ test " in line) == (guarded is not None) and "btrfs-backup-filesystem" in line, line
    with pytest.raises(Refused) as refused:
        parse_request(line, ROOT)
    assert refused.value.kind == serve_module.SHELL_RECEIVE, refused.value
    assert "serve's own form" in str(refused.value)


ASKED = "&& printf '\\n%%s\\n' btrfs-backup-arrived && { btrfs subvolume show %s || :; }"
ASKING_REFUSED = [
    ("of-another-folder", "%s %s" % (RECEIVE, ASKED % (ROOT + "/other/n")), "path"),
    ("of-the-folder-itself", "%s %s" % (RECEIVE, ASKED % FOLDER), "path"),
    ("of-a-deeper-path", "%s %s" % (RECEIVE, ASKED % (FOLDER + "/n/x")), "path"),
    ("outside-the-root", "%s %s" % (RECEIVE, ASKED % "/etc/n"), "path"),
    ("dotdot", "%s %s" % (RECEIVE, ASKED % (FOLDER + "/../../web2/home/n")), "path"),
    ("another-program", "%s && printf '\\n%%s\\n' btrfs-backup-arrived && { cat /etc/shadow || :; }" % RECEIVE,
     "command"),
    ("show-with-flags", "%s %s" % (RECEIVE, ASKED % ("-r " + FOLDER + "/n")), "command"),
    ("another-marker", "%s && printf '\\n%%s\\n' other && { btrfs subvolume show %s/n || :; }" % (RECEIVE, FOLDER),
     "command"),
    ("another-format", "%s && printf '%%s' btrfs-backup-arrived && { btrfs subvolume show %s/n || :; }"
     % (RECEIVE, FOLDER), "command"),
    ("without-its-braces", "%s && printf '\\n%%s\\n' btrfs-backup-arrived && btrfs subvolume show %s/n || :; }"
     % (RECEIVE, FOLDER), "command"),
    ("asked-twice", "%s %s %s" % (RECEIVE, ASKED % (FOLDER + "/n"), ASKED % (FOLDER + "/n")), "command"),
    ("after-a-delete", "btrfs subvolume delete -- %s/n %s" % (FOLDER, ASKED % (FOLDER + "/n")), "command"),
    ("after-a-listing", "btrfs subvolume list -a -u -q -R %s %s" % (FOLDER, ASKED % (FOLDER + "/n")), "command"),
    ("after-staging", "zstd -d -q | btrfs-backup-stage land %s/x %s" % (FOLDER, ASKED % (FOLDER + "/x/n")), "command"),
    ("semicolon-inside", "%s && printf '\\n%%s\\n' btrfs-backup-arrived && { id; btrfs subvolume show %s/n || :; }"
     % (RECEIVE, FOLDER), "command"),
]


GUARDED = asking_line(FOLDER, guarded="a1b2c3d4e5f60718")
ASKING_REFUSED += [
    ("guard-of-another-folder", GUARDED.replace("-c %i -- " + FOLDER, "-c %i -- /etc", 1), "command"),
    ("a-whole-guard-of-another-folder", GUARDED.replace(GUARDED.split(" && ", 1)[0], asking_line(
        ROOT + "/other", guarded="a1b2c3d4e5f60718").split(" && ", 1)[0], 1), "command"),
    ("guard-running-more", GUARDED.replace("exit 1;", "id; exit 1;", 1), "command"),
    ("guard-with-another-word", GUARDED.replace("last run sent to", "last run sent", 1), "command"),
    ("guard-after-the-receive", GUARDED.split(" && ", 1)[1].replace(
        " && {", " && " + GUARDED.split(" && ", 1)[0] + " && {", 1), "command"),
    ("filesystem-of-another-folder", asking_line(FOLDER).replace("%i\\n' -- " + FOLDER, "%i\\n' -- /etc", 1),
     "command"),
    ("filesystem-asked-otherwise", asking_line(FOLDER).replace("--printf", "--format", 1), "command"),
]


@pytest.mark.parametrize("line, kind", [(line, kind) for _id, line, kind in ASKING_REFUSED],
                         ids=[i for i, _line, _kind in ASKING_REFUSED])
def test_only_the_exact_plain_host_receive_is_declined(line, kind):
    """Anything else that asks what arrived is a refusal like any other (counted, alert or path)."""
    assert refused_kind(line) == kind


def test_a_restore_key_runs_no_receive_that_asks_what_arrived():
    with pytest.raises(Refused):
        parse_request(asking_line(FOLDER), ROOT, restore=True)


# -- refused: everything else ---------------------------------------------------------------------

REFUSED = [
    # Paths outside the key's root.
    ("receive-other-host", "btrfs receive /srv/backups/web2/root"),
    ("receive-sibling-prefix", "btrfs receive /srv/backups/web10/root"),
    ("receive-parent", "btrfs receive /srv/backups"),
    ("dotdot", "btrfs receive /srv/backups/web1/../web2/root"),
    ("dotdot-at-end", "btrfs receive /srv/backups/web1/root/.."),
    ("dot-component", "btrfs receive /srv/backups/web1/./root"),
    ("double-slash", "btrfs receive /srv/backups/web1//root"),
    ("relative-path", "btrfs receive root"),
    ("hidden-component", "mkdir -- /srv/backups/web1/.ssh"),
    ("delete-other-host", "btrfs subvolume delete -- /srv/backups/web2/root/20260101-000000"),
    ("delete-one-of-two-outside",
     "btrfs subvolume delete -- /srv/backups/web1/r/a /srv/backups/web2/r/a"),
    ("delete-root-itself", "btrfs subvolume delete -- /srv/backups/web1"),
    ("mkdir-root-itself", "mkdir -- /srv/backups/web1"),
    ("list-other-host", "btrfs subvolume list -a -u -q -R /srv/backups/web2"),
    ("readlink-other-host", "readlink -e -- /srv/backups/web2"),
    ("readlink-etc", "readlink -e -- /etc/shadow"),
    ("convert-rw-other-host", "btrfs property set -ts /srv/backups/web2/r/x ro false"),
    # Reading back: no btrfs send at all, not even of this host's own backups.
    ("send-other-host", "btrfs send /srv/backups/web2/root/20260101-000000"),
    ("send-own", "btrfs send /srv/backups/web1/root/20260101-000000"),
    ("send-incremental", "btrfs send -p /srv/backups/web1/r/a /srv/backups/web1/r/b"),
    ("cat-file", "cat -- /srv/backups/web1/root/x/etc/shadow"),
    ("cat-lock-file", "cat -- /srv/backups/web1/.outstanding_transfers"),
    # Other programs and other btrfs subcommands or flags.
    ("rm", "rm -rf /srv/backups/web2"),
    ("rm-inside", "rm -rf /srv/backups/web1/root"),
    ("sh-c", "sh -c 'btrfs receive /srv/backups/web1/root'"),
    ("bash", "bash"),
    ("sudo-other", "sudo -n rm -rf /"),
    ("sudo-without-n", "sudo btrfs receive /srv/backups/web1/root"),
    ("env-prefix", "env btrfs receive /srv/backups/web1/root"),
    ("absolute-btrfs", "/usr/bin/btrfs receive /srv/backups/web1/root"),
    ("receive-mount-option", "btrfs receive -m / /srv/backups/web1/root"),
    ("receive-from-file", "btrfs receive -f /etc/shadow /srv/backups/web1/root"),
    ("receive-dump", "btrfs receive --dump"),
    ("subvolume-snapshot", "btrfs subvolume snapshot /srv/backups/web2/r/a /srv/backups/web1/r/a"),
    ("subvolume-create", "btrfs subvolume create /srv/backups/web1/x"),
    ("property-set-other", "btrfs property set -ts /srv/backups/web1/r/x ro true"),
    ("list-other-flags", "btrfs subvolume list -o /srv/backups/web1"),
    ("filesystem", "btrfs filesystem show"),
    ("mkdir-mode", "mkdir -m 777 -- /srv/backups/web1/x"),
    ("cat-other-file", "cat /etc/passwd"),
    ("printf-alone", "printf '\\n%s %%d\\n' $?" % MARKER),
    ("empty", ""),
    ("blank", "   "),
    # Shell syntax: injections and redirections.
    ("semicolon-injection", "btrfs receive /srv/backups/web1/root; rm -rf /srv/backups/web2"),
    ("semicolon-in-batch",
     "readlink -e -- /srv/backups/web1; printf '\\n%s %%d\\n' $?; rm -rf /; "
     "printf '\\n%s %%d\\n' $?" % (MARKER, MARKER)),
    ("and-and", "btrfs receive /srv/backups/web1/root && rm -rf /"),
    ("or-or", "btrfs receive /srv/backups/web1/root || id"),
    ("pipe", "btrfs receive /srv/backups/web1/root | tee /tmp/x"),
    ("background", "btrfs receive /srv/backups/web1/root & id"),
    ("subshell", "(btrfs receive /srv/backups/web1/root)"),
    ("dollar-paren", "btrfs receive /srv/backups/web1/$(id)"),
    ("dollar-paren-quoted", "btrfs receive '/srv/backups/web1/$(id)'"),
    ("backticks", "btrfs receive /srv/backups/web1/`id`"),
    ("dollar-var", "btrfs receive $HOME"),
    ("redirect-out", "readlink -e -- /srv/backups/web1 > /etc/passwd"),
    ("redirect-in", "btrfs receive /srv/backups/web1/root < /srv/backups/web2/x"),
    ("redirect-append", "cat /proc/self/mountinfo >> /srv/backups/web1/x"),
    ("newline", "btrfs receive /srv/backups/web1/root\nrm -rf /"),
    ("carriage-return", "btrfs receive /srv/backups/web1/root\rid"),
    ("nul", "btrfs receive /srv/backups/web1/root\x00"),
    ("unbalanced-quote", "btrfs receive '/srv/backups/web1/root"),
    ("glob", "btrfs subvolume delete -- /srv/backups/web1/r/*"),
    ("space-in-name", "btrfs receive '/srv/backups/web1/a b'"),
    # Batches that do not follow the protocol.
    ("receive-in-batch", "btrfs receive /srv/backups/web1/root; printf '\\n%s %%d\\n' $?" % MARKER),
    ("batch-no-final-marker",
     "readlink -e -- /srv/backups/web1; printf '\\n%s %%d\\n' $?; readlink -e -- /srv/backups/web1"
     % MARKER),
    ("batch-marker-mismatch",
     "readlink -e -- /srv/backups/web1; printf '\\n%s %%d\\n' $?; cat /proc/self/mountinfo; "
     "printf '\\n__btrfs_backup_ffffffffffffffffffffffffffffffff__ %%d\\n' $?" % MARKER),
    ("batch-printf-format-string", "readlink -e -- /srv/backups/web1; printf '%s' /etc/shadow"),
    ("batch-printf-other-arg",
     "readlink -e -- /srv/backups/web1; printf '\\n%s %%d\\n' /etc/shadow" % MARKER),
    ("batch-empty-command", "; printf '\\n%s %%d\\n' $?" % MARKER),
    # Capability probes: exactly `zstd --version` and `btrfs --version`.
    ("zstd-version-extra-arg", "zstd --version /etc/shadow"),
    ("zstd-short-version", "zstd -V"),
    ("zstd-decompress-alone", "zstd -d -q"),
    ("zstd-decompress-file", "zstd -d -q -c /etc/shadow"),
    ("zstd-output-file", "zstd -d -q -o /srv/backups/web1/x"),
    ("btrfs-version-extra-arg", "btrfs --version -v"),
    ("btrfs-version-subcommand", "btrfs version"),
    ("btrfs-help", "btrfs --help"),
    ("absolute-zstd", "/usr/bin/zstd --version"),
    # The mode probe: exactly `echo btrfs-backup-serve-mode none`.
    ("echo-other", "echo hi"),
    ("mode-probe-other-mode", "echo btrfs-backup-serve-mode append-only"),
    ("mode-probe-extra-arg", "echo btrfs-backup-serve-mode none /etc/shadow"),
    ("mode-probe-option", "echo -e btrfs-backup-serve-mode none"),
    # The compressed receive: exactly `zstd -d -q | [sudo -n] btrfs receive [-vv] PATH`.
    ("pipe-into-delete", "zstd -d -q | btrfs subvolume delete -- /srv/backups/web1/root/x"),
    ("pipe-into-sudo-delete", "zstd -d -q | sudo -n btrfs subvolume delete -- /srv/backups/web1/root/x"),
    ("pipe-into-version", "zstd -d -q | btrfs --version"),
    ("pipe-into-shell", "zstd -d -q | sh -c 'btrfs receive /srv/backups/web1/root'"),
    ("pipe-into-receive-elsewhere", "zstd -d -q | btrfs receive /srv/backups/web2/root"),
    ("pipe-into-receive-dotdot", "zstd -d -q | btrfs receive /srv/backups/web1/../web2/root"),
    ("pipe-into-receive-from-file", "zstd -d -q | btrfs receive -f /etc/shadow /srv/backups/web1/root"),
    ("pipe-into-receive-expansion", "zstd -d -q | btrfs receive /srv/backups/web1/$(id)"),
    ("pipe-into-sudo-without-n", "zstd -d -q | sudo btrfs receive /srv/backups/web1/root"),
    ("cat-into-receive", "cat | btrfs receive /srv/backups/web1/root"),
    ("gzip-into-receive", "gzip -d | btrfs receive /srv/backups/web1/root"),
    ("zstd-output-file-into-receive", "zstd -d -q -o /etc/x | btrfs receive /srv/backups/web1/root"),
    ("zstd-input-file-into-receive", "zstd -d -q /etc/shadow | btrfs receive /srv/backups/web1/root"),
    ("zstd-redirected-into-receive", "zstd -d -q < /etc/shadow | btrfs receive /srv/backups/web1/root"),
    ("zstd-without-q", "zstd -d | btrfs receive /srv/backups/web1/root"),
    ("zstd-with-c", "zstd -d -q -c | btrfs receive /srv/backups/web1/root"),
    ("zstd-compress", "zstd -q | btrfs receive /srv/backups/web1/root"),
    ("sudo-zstd", "sudo -n zstd -d -q | btrfs receive /srv/backups/web1/root"),
    ("zstd-twice", "zstd -d | zstd -d | btrfs receive /srv/backups/web1/root"),
    ("zstd-q-twice", "zstd -d -q | zstd -d -q | btrfs receive /srv/backups/web1/root"),
    ("two-pipes", "zstd -d -q | btrfs receive /srv/backups/web1/root | tee /tmp/x"),
    ("pipe-then-redirect", "zstd -d -q | btrfs receive /srv/backups/web1/root > /tmp/x"),
    ("pipe-then-and", "zstd -d -q | btrfs receive /srv/backups/web1/root && id"),
    ("pipe-then-semicolon", "zstd -d -q | btrfs receive /srv/backups/web1/root; id"),
    ("pipe-or-or", "zstd -d -q || btrfs receive /srv/backups/web1/root"),
    ("pipe-and-stderr", "zstd -d -q |& btrfs receive /srv/backups/web1/root"),
    ("pipe-nothing-after", "zstd -d -q |"),
    ("pipe-nothing-before", "| btrfs receive /srv/backups/web1/root"),
    ("pipe-newline", "zstd -d -q |\nbtrfs receive /srv/backups/web1/root"),
    ("pipe-in-batch",
     "readlink -e -- /srv/backups/web1; printf '\\n%s %%d\\n' $?; "
     "zstd -d -q | btrfs receive /srv/backups/web1/root; printf '\\n%s %%d\\n' $?" % (MARKER, MARKER)),
    ("compressed-receive-in-batch",
     "zstd -d -q | btrfs receive /srv/backups/web1/root; printf '\\n%s %%d\\n' $?" % MARKER),
    ("probe-batch-with-pipe",
     "zstd --version; printf '\\n%s %%d\\n' $?; cat /proc/self/mountinfo | sh; "
     "printf '\\n%s %%d\\n' $?" % (MARKER, MARKER)),
]


@pytest.mark.parametrize("line", [line for _id, line in REFUSED], ids=[i for i, _ in REFUSED])
def test_everything_else_is_refused(line):
    with pytest.raises(Refused):
        parse_request(line, ROOT)


@pytest.mark.parametrize("root", ["", "/", "relative", "/srv/../etc", "/srv/backups/", "/a\nb"])
def test_a_bad_root_is_refused(root):
    with pytest.raises(Refused):
        parse_request("btrfs receive /srv/backups/web1/root", root)


@pytest.mark.parametrize("decompress_status, receive_status, expected", [
    pytest.param(0, 0, 0, id="both-ok"),
    pytest.param(1, 0, 1, id="corrupt-stream"),
    pytest.param(-9, 0, 137, id="zstd-killed"),
    pytest.param(0, 1, 1, id="receive-failed"),
    pytest.param(-13, 1, 1, id="receive-failed-first-zstd-lost-its-reader"),
    pytest.param(1, 1, 1, id="cut-stream-both-failed"),
    pytest.param(0, -9, 137, id="receive-killed"),
])
def test_the_compressed_receive_fails_when_either_side_fails(decompress_status, receive_status,
                                                             expected):
    assert pipe_status(decompress_status, receive_status) == expected


@pytest.mark.parametrize("status, said", [
    pytest.param(0, None, id="ok"),
    pytest.param(1, "zstd -d failed with exit status 1", id="corrupt-stream"),
    pytest.param(-9, "zstd -d was killed by signal 9", id="killed"),
])
def test_a_failed_decompression_is_named(status, said):
    message = decompress_failure(status)
    assert (message is None) if said is None else (said in message and "partial" in message)


# -- the listing filter -------------------------------------------------------------------------

LISTING = """\
ID 256 gen 9 top level 5 parent_uuid - received_uuid - uuid 11111111-0000-0000-0000-000000000001 path backups
ID 257 gen 12 top level 256 parent_uuid - received_uuid - uuid 11111111-0000-0000-0000-000000000002 path backups/web1
ID 258 gen 13 top level 257 parent_uuid - received_uuid aaaa uuid 11111111-0000-0000-0000-000000000003 path backups/web1/root/20260101-000000
ID 259 gen 14 top level 256 parent_uuid - received_uuid bbbb uuid 11111111-0000-0000-0000-000000000004 path backups/web10/root/20260101-000000
ID 260 gen 15 top level 256 parent_uuid - received_uuid cccc uuid 11111111-0000-0000-0000-000000000005 path <FS_TREE>/backups/web2/root/20260101-000000
"""


def test_a_listing_shows_only_subvolumes_at_or_below_the_root():
    kept = filter_listing(LISTING, "backups/web1")
    assert [line.split()[1] for line in kept.splitlines()] == ["257", "258"]
    assert "bbbb" not in kept and "cccc" not in kept


def test_a_root_at_the_top_of_its_filesystem_shows_everything():
    assert len(filter_listing(LISTING, "").splitlines()) == 5


# -- the executor on a plain folder (btrfs is a stand-in that records its argv) ------------------

@pytest.fixture
def server_root(tmp_path):
    root = tmp_path / "backups" / "web1"
    (root / "root").mkdir(parents=True)
    (tmp_path / "backups" / "web2" / "root").mkdir(parents=True)
    fake = tmp_path / "btrfs"
    fake.write_text("#!/bin/sh\necho \"btrfs $*\" >> %s\n" % (tmp_path / "btrfs.log"))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return root


def serve(root, line, stream=b""):
    """(status, stdout, stderr) of serving `line` with `stream` as the client's stdin. Real
    files: the executor hands its stdin/stdout/stderr to btrfs and zstd as they are."""
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as out, \
            tempfile.TemporaryFile() as err:
        stdin.write(stream)
        stdin.seek(0)
        server = Server(str(root), btrfs_path=str(root.parents[1] / "btrfs"), stdin=stdin,
                        stdout=out, stderr=err, use_sudo=False)
        status = server.serve(line)
        out.seek(0)
        err.seek(0)
        return status, out.read().decode(), err.read().decode()


def btrfs_calls(root):
    log = root.parents[1] / "btrfs.log"
    return log.read_text().splitlines() if log.exists() else []


def test_a_batch_echoes_each_status_after_the_marker(server_root):
    line = batch_line([(["readlink", "-e", "--", str(server_root / "root")], False),
                       (["readlink", "-e", "--", str(server_root / "missing")], False)])
    status, out, err = serve(server_root, line)
    assert out == "%s\n\n%s 0\n\n%s 1\n" % (server_root / "root", MARKER, MARKER)
    assert status == 1 and "No such file" in err


def test_mkdir_creates_a_folder_inside_the_root(server_root):
    status, _out, _err = serve(server_root, "mkdir -- %s" % (server_root / "home"))
    assert status == 0 and (server_root / "home").is_dir()


def test_a_symlink_out_of_the_root_is_refused_on_disk(server_root):
    os.symlink(str(server_root.parent / "web2"), str(server_root / "escape"))
    for line in ["btrfs receive %s/escape/root" % server_root,
                 "btrfs subvolume delete -- %s/escape/root" % server_root,
                 "mkdir -- %s/escape/new" % server_root]:
        status, _out, err = serve(server_root, line)
        assert status == EXIT_REFUSED and "symbolic link" in err
    assert not (server_root.parent / "web2" / "new").exists()
    assert btrfs_calls(server_root) == []


def test_btrfs_runs_as_an_argv_with_receive_confined_by_chroot(server_root):
    status, _out, _err = serve(server_root, "sudo -n btrfs receive %s/root" % server_root)
    assert status == 0
    status, _out, _err = serve(server_root, "btrfs subvolume delete -c -- %s/root/x" % server_root)
    assert status == 0
    assert btrfs_calls(server_root) == [
        "btrfs receive --chroot %s/root" % server_root,
        "btrfs subvolume delete -c -- %s/root/x" % server_root,
    ]


def test_a_refused_line_runs_nothing(server_root):
    line = "mkdir -- %s/a; rm -rf %s" % (server_root, server_root.parent / "web2")
    status, out, err = serve(server_root, line)
    assert status == EXIT_REFUSED and out == "" and "refused" in err
    assert not (server_root / "a").exists() and (server_root.parent / "web2").is_dir()


@pytest.mark.parametrize("compress", [False, True], ids=["plain-stream", "compressed"])
def test_a_receive_creates_its_folder_first(receiving_root, compress):
    folder = receiving_root / "home"
    status, _out, err = serve(receiving_root, folder_making_line(str(folder), compress),
                              compressed(STREAM) if compress else STREAM)
    assert status == 0, err
    assert folder.is_dir() and (receiving_root.parents[1] / "received").read_bytes() == STREAM
    assert btrfs_calls(receiving_root) == ["btrfs receive --chroot %s" % folder]


def test_a_folder_that_cannot_be_made_stops_before_the_receive(receiving_root):
    """The mkdir fails (a file is in the way): no receive runs, the stream is not read, and the
    source is told why."""
    (receiving_root / "taken").write_text("not a folder")
    folder = receiving_root / "taken" / "home"
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        stdin.write(compressed(STREAM))
        stdin.seek(0)
        server = Server(str(receiving_root), btrfs_path=str(receiving_root.parents[1] / "btrfs"), stdin=stdin,
                        stdout=out, stderr=err, use_sudo=False, log=lambda *_: pytest.fail("logged as a refusal"))
        status = server.serve(folder_making_line(str(folder)))
        err.seek(0)
        said = err.read().decode()
        unread = stdin.tell() == 0
    assert status == 1 and unread, (status, said)
    assert "mkdir: cannot create directory '%s': Not a directory" % folder in said, said
    assert "the folder %s could not be created, so nothing was received" % folder in said, said
    assert btrfs_calls(receiving_root) == [] and not (receiving_root.parents[1] / "received").exists()


def test_a_folder_through_a_symlink_is_refused_before_anything_runs(server_root):
    os.symlink(str(server_root.parent / "web2"), str(server_root / "escape"))
    folder = server_root / "escape" / "new"
    status, _out, err = serve(server_root, folder_making_line(str(folder)), compressed(STREAM))
    assert status == EXIT_REFUSED and "symbolic link" in err and "nothing was received" in err, err
    assert not (server_root.parent / "web2" / "new").exists() and btrfs_calls(server_root) == []


def test_an_append_only_key_may_make_the_folder_of_its_receive(receiving_root):
    folder = receiving_root / "home"
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        stdin.write(STREAM)
        stdin.seek(0)
        server = Server(str(receiving_root), btrfs_path=str(receiving_root.parents[1] / "btrfs"), stdin=stdin,
                        stdout=out, stderr=err, use_sudo=False, append_only=True,
                        log=lambda *_: pytest.fail("logged as a refusal"))
        status = server.serve(folder_making_line(str(folder), compress=False))
    assert status == 0 and folder.is_dir()
    assert (receiving_root.parents[1] / "received").read_bytes() == STREAM


def test_the_mount_table_shows_only_mounts_on_the_way_to_the_root(server_root):
    status, out, _err = serve(server_root, "cat /proc/self/mountinfo")
    assert status == 0
    shown = [m.mount_point for m in btrfs.parse_mountinfo(out)]
    real = os.path.realpath(str(server_root))
    assert shown and all(real == m or real.startswith(m.rstrip("/") + "/") or m == "/"
                         or m.startswith(real + "/") for m in shown)
    assert "/proc" not in shown


# -- zstd: the probes and the compressed receive (real zstd; btrfs a stand-in) -------------------

@pytest.fixture
def receiving_root(tmp_path):
    """A root whose stand-in btrfs keeps what `receive` reads in ../received, and answers
    `--version`."""
    root = tmp_path / "backups" / "web1"
    (root / "root").mkdir(parents=True)
    fake = tmp_path / "btrfs"
    fake.write_text('#!/bin/sh\nif [ "$1" = --version ]; then echo "btrfs-progs v6.2"; exit; fi\n'
                    'echo "btrfs $*" >> %s\ncat > %s\n' % (tmp_path / "btrfs.log", tmp_path / "received"))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return root


def compressed(data):
    return subprocess.run(["zstd", "-q", "-c"], input=data, stdout=subprocess.PIPE, check=True).stdout


STREAM = os.urandom(1 << 16) * 8  # compressible, and more than a pipe holds


def test_the_compressed_receive_gives_receive_the_decompressed_stream(receiving_root):
    status, _out, err = serve(receiving_root, compressed_line(str(receiving_root / "root")),
                                     compressed(STREAM))
    assert status == 0, err
    assert (receiving_root.parents[1] / "received").read_bytes() == STREAM
    assert btrfs_calls(receiving_root) == ["btrfs receive --chroot %s/root" % receiving_root]


def test_a_receive_that_fails_early_stops_zstd_and_gives_its_own_status(receiving_root):
    """zstd still has output that nobody will read: serve stops it instead of waiting."""
    fake = receiving_root.parents[1] / "btrfs"
    fake.write_text("#!/bin/sh\necho 'ERROR: destination exists' >&2\nexit 3\n")
    status, _out, err = serve(receiving_root, compressed_line(str(receiving_root / "root")),
                                     compressed(STREAM))
    assert status == 3 and "destination exists" in err and "zstd -d" not in err, (status, err)


@pytest.mark.parametrize("compress", [False, True])
def test_a_receive_that_reports_an_error_yet_exits_0_is_refused_as_a_broken_stream(receiving_root, tmp_path,
                                                                                   compress):
    """btrfs-progs 6.2 skips a clone whose source is outside `-m` with an ERROR line and status 0:
    its stderr, passed on to the client, decides; the refusal is counted as kind stream."""
    fake = receiving_root.parents[1] / "btrfs"
    fake.write_text("#!/bin/sh\ncat > /dev/null\necho 'At subvol 20260101-000000' >&2\n"
                    "echo 'ERROR: clone: source subvol path a unreachable from b' >&2\nexit 0\n")
    metrics = tmp_path / "refusals.prom"
    folder = str(receiving_root / "root")
    line = compressed_line(folder) if compress else "btrfs receive %s" % folder
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        stdin.write(compressed(STREAM) if compress else STREAM)
        stdin.seek(0)
        logged = []
        server = Server(str(receiving_root), btrfs_path=str(fake), stdin=stdin, stdout=out, stderr=err,
                        use_sudo=False, metrics_file=str(metrics), log=lambda m, p: logged.append((p, m)))
        status = server.serve(line)
        err.seek(0)
        said = err.read().decode()
    assert status == EXIT_REFUSED, said
    assert "At subvol 20260101-000000\nERROR: clone: source subvol path a unreachable from b\n" in said
    assert "refused: btrfs receive reported an error yet ended with status 0" in said, said
    assert [p for p, m in logged] == ["alert"] and logged[0][1].startswith("refused[stream]"), logged
    assert refusal_counter.parse_counts(metrics.read_text())[("web1", "stream")] == 1


def test_a_plain_hosts_receive_runs_nothing_and_counts_no_refusal(receiving_root, tmp_path):
    """Declined at once (it would hold the root's lock while its source waits for its survey):
    nothing is received, the log line is at info, and no refusal counter moves."""
    fake = receiving_root.parents[1] / "btrfs"
    fake.write_text("#!/bin/sh\ntouch %s/ran\nexit 0\n" % tmp_path)
    metrics = tmp_path / "refusals.prom"
    line = asking_line(str(receiving_root / "root"))
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        logged = []
        server = Server(str(receiving_root), btrfs_path=str(fake), stdin=stdin, stdout=out, stderr=err,
                        use_sudo=False, metrics_file=str(metrics), log=lambda m, p: logged.append((p, m)))
        status = server.serve(line)
        err.seek(0)
        said = err.read().decode()
    assert status == EXIT_REFUSED, said
    assert said.startswith("btrfs-backup serve: declined: this key runs btrfs-backup serve, not a shell"), said
    assert [p for p, m in logged] == ["info"], logged
    assert not (tmp_path / "ran").exists()
    assert set(refusal_counter.parse_counts(metrics.read_text()).values()) == {0}


def test_a_receive_that_says_nothing_wrong_keeps_its_status(receiving_root):
    fake = receiving_root.parents[1] / "btrfs"
    fake.write_text("#!/bin/sh\ncat > /dev/null\necho 'At subvol 20260101-000000' >&2\nexit 0\n")
    status, _out, err = serve(receiving_root, "btrfs receive %s" % (receiving_root / "root"), STREAM)
    assert status == 0 and err == "At subvol 20260101-000000\n", err


@pytest.mark.parametrize("damage", [
    pytest.param(lambda data: data[:len(data) // 2], id="cut"),
    pytest.param(lambda data: data[:64] + bytes(256) + data[320:], id="corrupt"),
    pytest.param(lambda data: b"not zstd at all", id="not-zstd"),
])
def test_a_bad_compressed_stream_fails_with_zstds_message(receiving_root, damage):
    status, _out, err = serve(receiving_root, compressed_line(str(receiving_root / "root")),
                                     damage(compressed(STREAM)))
    assert status != 0 and "zstd -d failed" in err, (status, err)
    assert err.index("/*stdin*") < err.index("zstd -d failed"), "zstd's own message comes first"


def test_the_probes_answer_in_a_batch(receiving_root):
    line = batch_line([(["zstd", "--version"], False), (["btrfs", "--version"], True)])
    status, out, err = serve(receiving_root, line, b"")
    assert status == 0, err
    zstd_out, btrfs_out, rest = out.split("\n%s 0\n" % MARKER)
    assert "Zstandard" in zstd_out and rest == ""
    # btrfs's own line, then serve's features (server_mode), which every source's reading skips.
    assert btrfs_out.splitlines() == ["btrfs-progs v6.2", "btrfs-backup-serve-accepts mkdir-receive"]
    assert progs_version(btrfs_out) == (6, 2) and end_tools_from(btrfs_out, True).proto2
    assert parse_features(btrfs_out) == {"mkdir-receive"}


def test_without_zstd_the_probe_and_the_compressed_receive_fail_as_a_shell_would(receiving_root,
                                                                                 monkeypatch):
    monkeypatch.setitem(serve_module.SERVE_ENV, "PATH", str(receiving_root))  # no zstd there
    status, out, err = serve(receiving_root, "zstd --version", b"")
    assert (status, out) == (127, "") and "cannot run zstd" in err
    status, _out, err = serve(receiving_root, compressed_line(str(receiving_root / "root")),
                                     compressed(b"x"))
    assert status == 127 and "cannot run zstd" in err
    assert btrfs_calls(receiving_root) == []


# -- append-only serving (invariant 10) -----------------------------------------------------------

COMPLETE = ("readonly", "5f0c2a44-8c7e-4b5e-9a55-6f1f3c1e2d10")
PARTIAL_WRITABLE = ("-", "-")
PARTIAL_READONLY = ("readonly", "-")  # read-only, but the receive never set its received UUID
WRITABLE_WITH_UUID = ("-", "5f0c2a44-8c7e-4b5e-9a55-6f1f3c1e2d10")  # made writable: not a backup


@pytest.mark.parametrize("flags, received_uuid, refused", [
    pytest.param("readonly", "5f0c2a44-8c7e-4b5e-9a55-6f1f3c1e2d10", True, id="complete-backup"),
    pytest.param("-", None, False, id="partial-writable"),
    pytest.param("readonly", None, False, id="partial-without-received-uuid"),
    pytest.param("-", "5f0c2a44-8c7e-4b5e-9a55-6f1f3c1e2d10", False, id="writable-with-uuid"),
])
def test_only_a_complete_backup_is_kept_from_deletion(flags, received_uuid, refused):
    reason = complete_backup_refusal(ROOT + "/root/x", flags == "readonly", received_uuid)
    assert bool(reason) == refused
    if refused:
        assert reason.startswith(APPEND_ONLY) and ROOT + "/root/x" in reason


@pytest.mark.parametrize("line, refused", [
    pytest.param("btrfs property set -ts {root}/root/x ro false", True, id="make-writable"),
    pytest.param("btrfs property set -f -ts {root}/root/x ro false", True, id="make-writable-forced"),
    pytest.param("btrfs subvolume delete -- {root}/root/x", False, id="delete-judged-on-disk"),
    pytest.param("btrfs receive {root}/root", False, id="receive"),
    pytest.param("zstd -d -q | btrfs receive {root}/root", False, id="compressed-receive"),
    pytest.param("mkdir -p -- {root}/root", False, id="mkdir"),
])
def test_append_only_refuses_making_a_backup_writable(line, refused):
    operation = parse_request(line.format(root=ROOT), ROOT).operations[0]
    assert bool(append_only_refusal(operation)) == refused


@pytest.mark.parametrize("line", [
    "mv {root}/root/x {root}/root/y",
    "btrfs subvolume snapshot {root}/root/x {root}/root/y",
    "btrfs property set -ts {root}/root/x ro true",
    "btrfs property set {root}/root/x ro false",
    "btrfs subvolume delete {root}/root/x",
    "btrfs subvolume delete -C -- {root}/root/x",
    "btrfs subvolume delete -- {root}",
    "btrfs receive -f /tmp/stream {root}/root",
    "btrfs receive --force-decompress {root}/root",
    "rm -rf {root}/root/x",
])
def test_renames_and_other_delete_shapes_are_refused_in_any_mode(line):
    with pytest.raises(Refused):
        parse_request(line.format(root=ROOT), ROOT)


@pytest.fixture
def append_only_root(tmp_path):
    """A root whose stand-in btrfs answers `subvolume show P` from P/.show and logs the rest."""
    root = tmp_path / "backups" / "web1"
    (root / "root").mkdir(parents=True)
    fake = tmp_path / "btrfs"
    fake.write_text('#!/bin/sh\nif [ "$1 $2" = "subvolume show" ]; then cat "$3/.show"; exit; fi\n'
                    'echo "btrfs $*" >> %s\n' % (tmp_path / "btrfs.log"))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return root


def subvolume_here(root, name, flags, received_uuid):
    path = root / "root" / name
    path.mkdir()
    (path / ".show").write_text(
        "%s\n\tName: \t\t\t%s\n\tUUID: \t\t\t0b4b1b0e-0000-4000-8000-000000000001\n"
        "\tReceived UUID: \t\t%s\n\tSubvolume ID: \t\t300\n\tFlags: \t\t\t%s\n"
        % (name, name, received_uuid, flags))
    return str(path)


def serve_append_only(root, line, priorities=None, metrics_file=None):
    """(status, stderr, logged messages); `priorities` gets each message's syslog priority."""
    logged = []

    def log(message, priority):
        logged.append(message)
        if priorities is not None:
            priorities.append(priority)

    with open(os.devnull, "rb") as stdin, tempfile.TemporaryFile() as out, \
            tempfile.TemporaryFile() as err:
        server = Server(str(root), btrfs_path=str(root.parents[1] / "btrfs"), stdin=stdin,
                        stdout=out, stderr=err, use_sudo=False, append_only=True,
                        log=log, metrics_file=metrics_file)
        status = server.serve(line)
        err.seek(0)
        return status, err.read().decode(), logged


@pytest.mark.parametrize("subvolumes, line, allowed", [
    pytest.param([("x", *COMPLETE)], "btrfs subvolume delete -- {x}", False, id="complete"),
    pytest.param([("x", *COMPLETE)], "btrfs subvolume delete -c -- {x}", False, id="complete-commit"),
    pytest.param([("x", *PARTIAL_WRITABLE)], "btrfs subvolume delete -- {x}", True, id="partial"),
    pytest.param([("x", *PARTIAL_READONLY)], "btrfs subvolume delete -- {x}", True,
                 id="partial-readonly"),
    pytest.param([("x", *WRITABLE_WITH_UUID)], "btrfs subvolume delete -- {x}", True,
                 id="writable-with-uuid"),
    pytest.param([("x", *PARTIAL_WRITABLE), ("y", *COMPLETE)], "btrfs subvolume delete -- {x} {y}",
                 False, id="partial-beside-complete"),
    pytest.param([("x", *PARTIAL_WRITABLE)], "btrfs property set -ts {x} ro false", False,
                 id="make-partial-writable"),
    pytest.param([("x", *COMPLETE)], "btrfs property set -f -ts {x} ro false", False,
                 id="make-complete-writable"),
])
def test_append_only_runs_only_what_leaves_complete_backups_alone(append_only_root, subvolumes,
                                                                   line, allowed):
    paths = {name: subvolume_here(append_only_root, name, flags, uuid)
             for name, flags, uuid in subvolumes}
    status, err, logged = serve_append_only(append_only_root, line.format(**paths))
    if allowed:
        assert status == 0, err
        assert btrfs_calls(append_only_root) == ["btrfs " + line.format(**paths).split("btrfs ", 1)[1]]
        assert logged == []
    else:
        assert status == EXIT_REFUSED and "refused: append-only" in err, err
        assert btrfs_calls(append_only_root) == []
        assert len(logged) == 1 and str(append_only_root) in logged[0] and "command:" in logged[0]


def test_every_refusal_is_logged_with_the_root_and_the_command(append_only_root):
    status, _err, logged = serve_append_only(append_only_root, "rm -rf %s" % append_only_root)
    assert status == EXIT_REFUSED
    assert logged == ["refused[command] for %s: 'rm -rf %s' is not a command that a backup sends; "
                      "command: 'rm -rf %s'" % (append_only_root, append_only_root, append_only_root)]


# -- the backup disk (rule 8) -----------------------------------------------------------------

@pytest.mark.parametrize("found, refused", [
    ("0b4b1b0e-0000-4000-8000-000000000001", False),
    ("0b4b1b0e-0000-4000-8000-000000000002", True),
    (None, True),
])
def test_the_root_must_be_on_the_filesystem_it_was_set_up_on(found, refused):
    expected = "0b4b1b0e-0000-4000-8000-000000000001"
    if refused:
        with pytest.raises(Refused, match="is the backup disk mounted"):
            on_its_disk(ROOT, expected, found)
    else:
        on_its_disk(ROOT, expected, found)


def test_a_root_off_its_disk_receives_nothing(server_root):
    """tmp_path is not the filesystem named: every request is refused before anything runs."""
    logged = []
    with open(os.devnull, "rb") as stdin, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        server = Server(str(server_root), btrfs_path=str(server_root.parents[1] / "btrfs"), stdin=stdin,
                        stdout=out, stderr=err, use_sudo=False,
                        log=lambda message, priority: logged.append((message, priority)),
                        filesystem="0b4b1b0e-0000-4000-8000-000000000001")
        status = server.serve("mkdir -- %s/new" % server_root)
        err.seek(0)
        message = err.read().decode()
    assert status == EXIT_REFUSED and "is the backup disk mounted" in message, message
    assert not (server_root / "new").exists() and btrfs_calls(server_root) == [] and len(logged) == 1
    assert logged[0][0].startswith("refused[disk] ") and logged[0][1] == "err", logged


# -- the mode probe: a source asks before it stages deletions ------------------------------------

@pytest.mark.parametrize("append_only, mode", [(True, "append-only"), (False, "open")])
def test_serve_answers_the_mode_probe_with_its_mode(server_root, append_only, mode):
    line = batch_line([(["btrfs", "--version"], True), (MODE_PROBE, False)])
    with open(os.devnull, "rb") as stdin, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        server = Server(str(server_root), btrfs_path="true", stdin=stdin, stdout=out, stderr=err,
                        use_sudo=False, append_only=append_only, log=lambda *_: pytest.fail("logged"))
        status = server.serve(line)
        out.seek(0)
        answer = out.read().decode().split("\n%s 0\n" % MARKER)
    assert status == 0 and answer[-1] == "", answer
    assert parse_mode(answer[1]) == mode


def test_a_plain_ssh_host_answers_the_mode_probe_with_none():
    """The shell of a host without serve only echoes the probe: nothing else happens."""
    echoed = subprocess.run(["sh", "-c", SshEndpoint("nas", "/x").remote_line(MODE_PROBE, False)],
                            stdout=subprocess.PIPE, text=True, check=True).stdout
    assert parse_mode(echoed) == "none"


@pytest.mark.parametrize("answer", ["", "btrfs-backup-serve-mode", "btrfs-backup-serve-mode maybe",
                                    "refused", "btrfs-backup-serve-mode append-only extra"])
def test_anything_else_is_an_unknown_mode(answer):
    assert parse_mode(answer) is None


@pytest.mark.parametrize("answer, features", [
    pytest.param("btrfs-progs v6.2\nbtrfs-backup-serve-accepts mkdir-receive\n", {"mkdir-receive"}, id="serve"),
    pytest.param("btrfs-progs v6.2\nbtrfs-backup-serve-accepts mkdir-receive later\n", {"mkdir-receive", "later"},
                 id="serve-with-more"),
    pytest.param("btrfs-progs v6.2\n", set(), id="plain-host-or-older-serve"),
    pytest.param("btrfs-progs v6.2\nbtrfs-backup-serve-accepts\n", set(), id="none-named"),
    pytest.param("btrfs-progs v6.2 btrfs-backup-serve-accepts mkdir-receive\n", set(), id="not-a-line-of-its-own"),
    pytest.param("", set(), id="no-answer"),
])
def test_serves_features_are_read_from_its_answer_to_btrfs_version(answer, features):
    assert parse_features(answer) == features


def test_serve_names_every_feature_it_takes_and_keeps_the_mode_answer_two_words():
    """An older source parses the mode answer as exactly two words: the features are not in it."""
    assert parse_features(features_line()) == set(SERVE_FEATURES)
    assert len(serve_answer(append_only=True).split()) == 2


# -- refusals: each kind at its own syslog priority, counted per host -----------------------------

@pytest.mark.parametrize("line, kind, priority", [
    pytest.param("rm -rf {root}", "command", "alert", id="not-a-backup-command"),
    pytest.param("btrfs send {root}/root/x", "command", "alert", id="read-back"),
    pytest.param("zstd -d -q | sh", "command", "alert", id="pipe-into-shell"),
    pytest.param("btrfs subvolume list -a -u -q -R {root}/../web2", "path", "alert", id="dotdot"),
    pytest.param("mkdir -- /etc/x", "path", "alert", id="outside"),
    pytest.param("btrfs subvolume delete -- {root}", "path", "alert", id="the-root-itself"),
    pytest.param("btrfs subvolume delete -- {x}", "append-only", "alert", id="delete-complete"),
    pytest.param("btrfs property set -ts {x} ro false", "append-only", "alert", id="make-writable"),
])
def test_each_refusal_is_logged_with_its_kind_at_its_priority(append_only_root, line, kind, priority):
    x = subvolume_here(append_only_root, "x", *COMPLETE)
    priorities = []
    status, _err, logged = serve_append_only(append_only_root, line.format(root=append_only_root, x=x),
                                             priorities)
    assert status == EXIT_REFUSED
    assert len(logged) == 1 and logged[0].startswith("refused[%s] for %s: " % (kind, append_only_root)), logged
    assert logged[0].endswith("; command: %r" % line.format(root=append_only_root, x=x))
    assert priorities == [priority]


def test_a_path_through_a_symbolic_link_is_a_path_refusal(append_only_root, tmp_path):
    (append_only_root / "root" / "out").symlink_to(tmp_path)
    priorities = []
    _status, _err, logged = serve_append_only(append_only_root, "mkdir -- %s/root/out/x" % append_only_root,
                                              priorities)
    assert logged[0].startswith("refused[path] ") and priorities == ["alert"] and not (tmp_path / "x").exists()


def test_every_kind_has_a_syslog_priority():
    import syslog
    assert set(REFUSAL_KINDS.values()) <= {"alert", "err"}
    for priority in REFUSAL_KINDS.values():
        assert isinstance(getattr(syslog, "LOG_" + priority.upper()), int)
    assert Refused("x").kind == "command" and Refused("x", "quota").kind == "quota"


def counters(path):
    return refusal_counter.parse_counts(path.read_text())


def test_refusals_are_counted_per_host_and_kind(append_only_root, tmp_path):
    metrics = tmp_path / "metrics" / "btrfs-backup-serve.prom"
    metrics.parent.mkdir()
    # Another host's counters in the same file stay as they are.
    metrics.write_text(refusal_counter.render_counts({("web2", "path"): 7}))
    x = subvolume_here(append_only_root, "x", *COMPLETE)
    status, _err, _logged = serve_append_only(append_only_root, "test -e %s" % x, metrics_file=str(metrics))
    assert status == 0
    zero = {("web1", kind): 0 for kind in REFUSAL_KINDS}
    assert counters(metrics) == {**zero, ("web2", "path"): 7}, "a host's counters exist from its first connection"
    for line in ("btrfs subvolume delete -- %s" % x, "btrfs subvolume delete -c -- %s" % x, "rm -rf /"):
        serve_append_only(append_only_root, line, metrics_file=str(metrics))
    assert counters(metrics) == {**zero, ("web2", "path"): 7, ("web1", "append-only"): 2, ("web1", "command"): 1}
    assert oct(metrics.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in metrics.parent.iterdir()) == [metrics.name], "no temporary file left"


def _count_in_a_child(path, number):
    for _ in range(number):
        refusal_counter.update(path, "web1", REFUSAL_KINDS, "command")


def test_concurrent_refusals_lose_no_count(tmp_path):
    import multiprocessing
    path = str(tmp_path / "refusals.prom")
    children = [multiprocessing.Process(target=_count_in_a_child, args=(path, 25)) for _ in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join()
    assert counters(tmp_path / "refusals.prom")[("web1", "command")] == 100


def test_a_counter_that_cannot_be_written_is_logged_and_the_answer_stays(append_only_root, tmp_path):
    metrics = tmp_path / "missing-folder" / "refusals.prom"
    priorities = []
    status, err, logged = serve_append_only(append_only_root, "rm -rf /", priorities, metrics_file=str(metrics))
    assert status == EXIT_REFUSED and "refused" in err
    assert logged[0].startswith("refused[command] ") and "cannot count refusals in %s" % metrics in logged[1]
    assert priorities == ["alert", "err"]


@pytest.mark.parametrize("host", ["web1", 'odd"host\\name'])
def test_the_counter_file_reads_back_what_it_wrote(host):
    counts = refusal_counter.counted({}, host, REFUSAL_KINDS, "path")
    assert refusal_counter.parse_counts(refusal_counter.render_counts(counts)) == counts


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed")
def test_the_counter_file_passes_promtool(tmp_path):
    path = tmp_path / "refusals.prom"
    refusal_counter.update(str(path), "web1", REFUSAL_KINDS, "append-only")
    refusal_counter.update(str(path), "web2", REFUSAL_KINDS)
    checked = subprocess.run(["promtool", "check", "metrics"], input=path.read_text(), capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# -- the options of the forced command: sizes and durations in the one grammar (model/units) -----

@pytest.mark.parametrize("quota, clock_skew, quota_bytes, skew", [
    ("50G", "15m", 50 << 30, 900),
    ("1.5G", "15min", 3 << 29, 900),  # a decimal quota was refused before
    ("50 GiB", "0", 50 << 30, 0),
])
def test_serve_reads_its_quota_and_clock_skew(quota, clock_skew, quota_bytes, skew, monkeypatch):
    made = {}

    class Recorded:
        def __init__(self, root, btrfs_path, **options):
            made.update(options)

        def serve(self, command):
            return 0

    monkeypatch.setattr(serve_module, "Server", Recorded)
    assert serve_module.main(ROOT, append_only=True, quota_size=quota, clock_skew=clock_skew, environ={}) == 0
    assert (made["quota_bytes"], made["clock_skew"]) == (quota_bytes, skew)


@pytest.mark.parametrize("quota, clock_skew, said", [
    ("lots", "15m", "--quota must be a positive size such as 20M, 512K or 1.5G"),
    ("0", "15m", "--quota must be a positive size"),
    ("50G", "3mo", "--clock-skew '3mo' is not a duration: months and years have no fixed length"),
])
def test_serve_refuses_a_bad_quota_or_clock_skew_before_anything_runs(quota, clock_skew, said, capsys):
    assert serve_module.main(ROOT, append_only=True, quota_size=quota, clock_skew=clock_skew, environ={}) == 2
    assert said in capsys.readouterr().err
