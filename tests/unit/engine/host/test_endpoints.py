"""engine.host.endpoints: each kind's answers, location parsing, dest ids, the ssh command line,
batched remote output and an ssh host that failed once failing fast."""

import os
import shlex
import subprocess

import pytest

from engine.host import btrfs, effects
from engine.host.endpoints.local import LocalEndpoint
from engine.host.endpoints.location import SCHEMES, endpoint_class, parse_location
from engine.host.endpoints.shell import ShellEndpoint
from engine.host.endpoints.ssh import (
    BULK_CIPHERS,
    DEFAULT_SSH_OPTIONS,
    OPENSSH_DEFAULT_CIPHERS,
    SshConnections,
    SshEndpoint,
    split_batch_output,
)
from engine.host.locks import LocalLockStore, LockTable, RemoteLockStore
from engine.model.errors import ConfigError, EndpointError, UnreachableError
from engine.host.runner import CommandResult


# -- what each kind answers (the engine asks these instead of the kind) ---------------------------

LOCAL = "/backup"
SSH = "ssh://nas/backup"
SHELL = "shell://cat > /backup/home.btrfs"


@pytest.mark.parametrize("spec, cls, what, can_list, on_this_machine, crosses_network, with_btrfs", [
    pytest.param(LOCAL, LocalEndpoint, "a local folder", True, True, False, True, id="local"),
    pytest.param(SSH, SshEndpoint, "an ssh folder", True, False, True, True, id="ssh"),
    pytest.param(SHELL, ShellEndpoint, "a shell:// sink", False, False, False, False, id="shell"),
])
def test_each_kind_answers_for_itself(spec, cls, what, can_list, on_this_machine, crosses_network,
                                      with_btrfs):
    endpoint = parse_location(spec)
    assert type(endpoint) is cls
    assert endpoint.what == what
    assert endpoint.can_list is can_list  # False: a stream sink with no folder
    assert endpoint.on_this_machine is on_this_machine
    assert endpoint.crosses_network is crosses_network  # compression pays; tools are elsewhere
    assert endpoint.receives_with_btrfs is with_btrfs


class _RealMachine:
    kernel_listing = True


class _Fake:
    """A stand-in runner: no kernel to ask."""


@pytest.mark.parametrize("spec, real, fake", [
    pytest.param(LOCAL, True, False, id="local"),
    pytest.param(SSH, False, False, id="ssh"),
    pytest.param(SHELL, False, False, id="shell"),
])
def test_only_a_local_folder_may_ask_the_kernel_and_only_on_the_real_machine(spec, real, fake):
    endpoint = parse_location(spec)
    assert endpoint.kernel_answers(_RealMachine()) is real
    assert endpoint.kernel_answers(_Fake()) is fake


@pytest.mark.parametrize("source, dest, shared", [
    pytest.param(LOCAL, "/mnt/usb", True, id="local-local"),
    pytest.param(LOCAL, SSH, False, id="local-ssh"),
    pytest.param(SSH, LOCAL, False, id="ssh-local"),
    pytest.param(SSH, "ssh://nas/other", False, id="ssh-ssh"),
])
def test_mount_sources_compare_only_on_one_machine(source, dest, shared):
    assert parse_location(source).shares_mounts_with(parse_location(dest)) is shared


@pytest.mark.parametrize("spec, returncode, unreachable", [
    pytest.param(SSH, 255, True, id="ssh-255-is-ssh-itself"),
    pytest.param(SSH, 1, False, id="ssh-1-is-the-command"),
    pytest.param(LOCAL, 255, False, id="local-255-is-the-command"),
])
def test_what_a_failed_command_means(spec, returncode, unreachable):
    endpoint = parse_location(spec)
    failure = endpoint.connection_failure(CommandResult(["x"], returncode, "", "ssh: connect to host nas: "
                                                                               "Connection refused\n"))
    if unreachable:
        assert isinstance(failure, UnreachableError)
        assert str(failure) == "cannot reach ssh://nas/backup: ssh: connect to host nas: Connection refused"
    else:
        assert failure is None


@pytest.mark.parametrize("spec, user, port, completed", [
    (LOCAL, "backup", 2222, LOCAL),
    (SHELL, "backup", 2222, SHELL),
    ("ssh://nas/backup", "backup", 2222, "ssh://backup@nas:2222/backup"),
    ("ssh://nas/backup", None, None, "ssh://nas/backup"),
    ("ssh://root@nas:22/backup", "backup", 2222, "ssh://root@nas:22/backup"),  # the URL's own login wins
])
def test_a_login_given_apart_completes_only_what_the_location_left_out(spec, user, port, completed):
    endpoint = parse_location(spec, allow_shell=True)
    assert endpoint.with_login(user, port).id == parse_location(completed, allow_shell=True).id


def test_a_bad_login_given_apart_is_refused():
    with pytest.raises(ConfigError, match="ssh user"):
        parse_location("ssh://nas/backup").with_login("bad user", None)


@pytest.mark.parametrize("spec, store", [
    pytest.param(LOCAL, LocalLockStore, id="local-file"),
    pytest.param(SSH, RemoteLockStore, id="over-ssh"),
])
def test_each_kind_makes_its_lock_store(spec, store):
    assert type(parse_location(spec).lock_store(None, "/data/snapshot")) is store


def test_a_shell_sink_has_no_lock_store():
    with pytest.raises(EndpointError, match="no snapshot folder"):
        parse_location(SHELL).lock_store(None, "/data/snapshot")


ZSTD_C, ZSTD_D = ["zstd", "-q", "-c"], ["zstd", "-d", "-q"]
SEND = ["btrfs", "send", "/data/snapshot/s1"]


@pytest.mark.parametrize("spec, compress, name, words", [
    pytest.param(LOCAL, None, "btrfs send", SEND, id="local"),
    pytest.param(SSH, None, "btrfs send on nas", SEND, id="ssh"),
    pytest.param(SSH, ZSTD_C, "btrfs send | zstd on nas", SEND + ["|"] + ZSTD_C, id="ssh-compressed"),
])
def test_sender(spec, compress, name, words):
    stage_name, argv = parse_location(spec).sender(SEND, compress)
    assert stage_name == name
    assert (argv if spec == LOCAL else shlex.split(argv[-1])) == words


@pytest.mark.parametrize("compress, words", [
    pytest.param(None, SEND, id="plain"),
    pytest.param(ZSTD_C, SEND + ["|"] + ZSTD_C, id="compressed"),
])
def test_a_remote_send_starts_only_after_the_command_before_it(compress, words):
    """`FIRST && SEND [| ZSTD]`: the shell runs the pipe only if FIRST succeeded."""
    first = (["sh", "-c", "echo it > \"$1\"", "sh", "/data/snapshot/x y"], True)
    _name, argv = parse_location(SSH).sender(SEND, compress, first)
    assert shlex.split(argv[-1]) == first[0] + ["&&"] + words


@pytest.mark.parametrize("decompress, receive", [
    pytest.param(None, ["btrfs", "receive", "/backup/new folder"], id="plain"),
    pytest.param(ZSTD_D, ZSTD_D + ["|", "btrfs", "receive", "/backup/new folder"], id="compressed"),
])
def test_a_receive_into_a_missing_folder_creates_it_in_the_same_remote_line(decompress, receive):
    dest = parse_location("ssh://nas/backup/new folder")
    assert dest.create_in_next_command(dest.path)
    _name, argv = dest.receiver(False, decompress)
    assert shlex.split(argv[-1]) == ["mkdir", "-p", "--", "/backup/new folder", "&&"] + receive


def test_a_remote_command_after_another_runs_only_once_that_succeeded():
    class Recorder:
        def run(self, argv):
            self.argv = argv
            return "done"

    runner = Recorder()
    assert parse_location(SSH).run_after(runner, (["sh", "-c", "exit 0"], True), ["btrfs", "subvolume", "delete",
                                                                                  "--", "/b/s 1"]) == "done"
    assert shlex.split(runner.argv[-1]) == ["sh", "-c", "exit 0", "&&", "btrfs", "subvolume", "delete", "--", "/b/s 1"]


def test_only_a_remote_end_creates_a_folder_in_its_next_command():
    assert not parse_location(LOCAL).create_in_next_command("/backup")


def test_a_local_send_takes_no_command_before_it():
    with pytest.raises(ValueError):
        parse_location(LOCAL).sender(SEND, None, (["true"], False))


@pytest.mark.parametrize("spec, decompress, name, words", [
    pytest.param(LOCAL, None, "btrfs receive", ["btrfs", "receive", "/backup"], id="local"),
    pytest.param(SSH, None, "btrfs receive on nas", ["btrfs", "receive", "/backup"], id="ssh"),
    pytest.param(SSH, ZSTD_D, "btrfs receive on nas", ZSTD_D + ["|", "btrfs", "receive", "/backup"],
                 id="ssh-compressed"),
    pytest.param(SHELL, None, "shell command 'cat > /backup/home.btrfs'",
                 ["sh", "-c", "cat > /backup/home.btrfs"], id="shell"),
])
def test_receiver(spec, decompress, name, words):
    stage_name, argv = parse_location(spec).receiver(False, decompress)
    assert stage_name == name
    assert (shlex.split(argv[-1]) if spec == SSH else argv) == words


@pytest.mark.parametrize("spec", [LOCAL, SHELL])
def test_a_stream_that_crosses_no_network_is_not_compressed(spec):
    endpoint = parse_location(spec)
    with pytest.raises(ValueError, match="crosses no network"):
        endpoint.receiver(False, ZSTD_D)


def test_the_kinds_table_names_every_scheme():
    assert {scheme: endpoint_class(scheme).kind for scheme in SCHEMES} == {"ssh": "ssh", "shell": "shell"}
    assert endpoint_class("ftp") is None
    with pytest.raises(ConfigError, match=r"unknown scheme \(use a path, ssh://, shell://, borg:PATH, "
                                          r"borg\+ssh:// or restic:REPOSITORY\)"):
        parse_location("zfs://x/y")


# -- parse_location: what each accepted spelling becomes -----------------------------------------

@pytest.mark.parametrize("spec, kind, host, user, port, path", [
    pytest.param("/backup", "local", None, None, None, "/backup", id="local-absolute"),
    pytest.param("/backup/home/", "local", None, None, None, "/backup/home", id="local-trailing-slash"),
    pytest.param("ssh://nas/backup", "ssh", "nas", None, None, "/backup", id="ssh-host"),
    pytest.param("ssh://root@nas.example.org:2222/srv/b", "ssh", "nas.example.org", "root", 2222,
                 "/srv/b", id="ssh-user-host-port"),
    pytest.param("ssh://[::1]:22/p", "ssh", "[::1]", None, 22, "/p", id="ssh-ipv6-literal"),
    pytest.param("ssh://10.0.0.2/b", "ssh", "10.0.0.2", None, None, "/b", id="ssh-ipv4"),
    pytest.param("ssh://nas/backups/it's here", "ssh", "nas", None, None, "/backups/it's here",
                 id="ssh-quote-in-path"),
])
def test_parse_location_accepts(spec, kind, host, user, port, path):
    endpoint = parse_location(spec)
    assert endpoint.kind == kind
    assert endpoint.path == path
    assert getattr(endpoint, "host", None) == host
    assert getattr(endpoint, "user", None) == user
    assert getattr(endpoint, "port", None) == port


def test_parse_location_makes_relative_local_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    endpoint = parse_location("backups/home")
    assert isinstance(endpoint, LocalEndpoint)
    assert endpoint.path == os.path.join(str(tmp_path), "backups", "home")


def test_local_id_is_the_real_path(tmp_path):
    # Two spellings of one folder (a symlink) share one id, hence their locks.
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert parse_location(str(tmp_path / "link")).id == os.path.realpath(str(tmp_path / "real"))


def test_shell_destination_keeps_the_command():
    endpoint = parse_location("shell://cat > /backup/home.btrfs")
    assert isinstance(endpoint, ShellEndpoint)
    assert endpoint.id == "shell://cat > /backup/home.btrfs"
    assert endpoint.receive_argv() == ["sh", "-c", "cat > /backup/home.btrfs"]
    assert not endpoint.can_list


# -- parse_location: bad input, each with a message that names the problem -----------------------

@pytest.mark.parametrize("spec, kwargs, words", [
    pytest.param("", {}, ["empty location"], id="empty"),
    pytest.param("shell://cat > /x", {"allow_shell": False}, ["only be a destination"],
                 id="shell-as-source"),
    pytest.param("shell://   ", {}, ["needs a command"], id="shell-without-command"),
    pytest.param("ssh://nas", {}, ["not a valid ssh URL", "/absolute/path"], id="ssh-missing-path"),
    pytest.param("ssh://nas:22", {}, ["not a valid ssh URL"], id="ssh-port-but-no-path"),
    pytest.param("ssh://nas:abc/b", {}, ["port 'abc' is not a number"], id="port-abc"),
    pytest.param("ssh://nas:/b", {}, ["port '' is not a number"], id="port-empty"),
    pytest.param("ssh://nas:70000/b", {}, ["port 70000", "1-65535"], id="port-70000"),
    pytest.param("ssh://nas:0/b", {}, ["port 0", "1-65535"], id="port-0"),
    pytest.param("ssh://h;rm -rf //b", {}, ["ssh host 'h;rm -rf '", "not a valid host"],
                 id="host-semicolon"),
    pytest.param("ssh://$(id)/b", {}, ["ssh host '$(id)'"], id="host-command-substitution"),
    pytest.param("ssh://a b/c", {}, ["ssh host 'a b'"], id="host-space"),
    pytest.param("ssh://-oProxyCommand=x/b", {}, ["ssh host '-oProxyCommand=x'"],
                 id="host-looks-like-ssh-option"),
    pytest.param("ssh://u;id@nas/b", {}, ["ssh user 'u;id'", "not a valid user"], id="user-semicolon"),
    pytest.param("ssh://$(id)@nas/b", {}, ["ssh user '$(id)'"], id="user-command-substitution"),
    pytest.param("ssh://-l@nas/b", {}, ["ssh user '-l'"], id="user-looks-like-option"),
    pytest.param("ssh://nas/backup/../etc", {}, ["'..' is not allowed"], id="ssh-dot-dot"),
    pytest.param("/backup/../etc", {}, ["'..' is not allowed"], id="local-dot-dot"),
    pytest.param("../backup", {}, ["'..' is not allowed"], id="local-leading-dot-dot"),
    pytest.param("ftp://x/y", {}, ["unknown scheme"], id="unknown-scheme"),
    pytest.param("/backup\x00x", {}, ["control characters"], id="local-nul"),
    pytest.param("ssh://nas/b\x00x", {}, ["control characters"], id="ssh-nul"),
    pytest.param("/backup\nx", {}, ["control characters"], id="local-newline"),
    pytest.param("ssh://nas/b", {"ssh_options": ["-oProxyCommand=x"]},
                 ["ssh option '-oProxyCommand=x'", "Key=value"], id="ssh-opt-dash-o"),
    pytest.param("ssh://nas/b", {"ssh_options": ["Cipher"]}, ["ssh option 'Cipher'"],
                 id="ssh-opt-without-value"),
    pytest.param("ssh://nas/b", {"ssh_options": ["Cipher=x\nProxyCommand=y"]},
                 ["ssh option"], id="ssh-opt-newline"),
    pytest.param("ssh://nas/b", {"ssh_options": [""]}, ["ssh option ''"], id="ssh-opt-empty"),
    pytest.param("ssh://nas\n/b", {}, ["ssh host"], id="host-trailing-newline"),
    pytest.param("ssh://u\n@nas/b", {}, ["ssh user"], id="user-trailing-newline"),
    pytest.param("ssh://nas:\u00b2/b", {}, ["port"], id="port-superscript-two"),
])
def test_parse_location_rejects(spec, kwargs, words):
    with pytest.raises(ConfigError) as err:
        parse_location(spec, **kwargs)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("option", [
    "Cipher=aes256-ctr",
    "IdentityFile=/root/my key",
    "IdentityFile /root/id_rsa",
    "StrictHostKeyChecking=accept-new",
])
def test_ssh_options_accepted(option):
    endpoint = parse_location("ssh://nas/b", ssh_options=[option])
    assert endpoint.ssh_options == [option]


def test_relative_remote_path_is_rejected():
    # An ssh URL always has "/" before its path; the endpoint itself also refuses relative paths.
    with pytest.raises(ConfigError) as err:
        SshEndpoint("nas", "backup")
    assert "remote path 'backup' must be absolute" in str(err.value)


# -- dest ids: btrfs-backup 0.3 shape, so its lock entries keep matching --------------------------

@pytest.mark.parametrize("spec, expected", [
    pytest.param("ssh://nas/backup", "ssh://nas/backup", id="host-only"),
    pytest.param("ssh://root@nas/backup", "ssh://root@nas/backup", id="user"),
    pytest.param("ssh://nas:2222/backup", "ssh://nas:2222/backup", id="port"),
    pytest.param("ssh://root@nas:2222/backup", "ssh://root@nas:2222/backup", id="user-and-port"),
    pytest.param("ssh://nas:22/backup", "ssh://nas:22/backup", id="default-port-given-is-kept"),
    pytest.param("ssh://nas/backup/", "ssh://nas/backup", id="trailing-slash-normalised"),
    pytest.param("ssh://[::1]:2222/b", "ssh://[::1]:2222/b", id="ipv6"),
    pytest.param("ssh://nas//backup", "ssh://nas/backup", id="double-leading-slash"),
])
def test_ssh_dest_id(spec, expected):
    assert parse_location(spec).id == expected


# -- the ssh command line ------------------------------------------------------------------------

NASTY_PATH = "/backups/it's here; rm -rf /"


@pytest.mark.parametrize("argv", [
    pytest.param(btrfs.receive_argv(NASTY_PATH), id="receive-into-nasty-path"),
    pytest.param(btrfs.delete_argv([NASTY_PATH + "/s1"]), id="delete-nasty-path"),
    pytest.param(["printf", "%s\\n", "$(id)", "`id`", "a\tb", "*", "~", "\"q\"", ""],
                 id="shell-specials-and-empty-word"),
])
def test_remote_line_round_trips_through_the_remote_shell(argv):
    endpoint = SshEndpoint("nas", NASTY_PATH)
    command = endpoint.command(argv)
    assert command[-2] == "--"
    # The remote login shell splits the line; it must give back exactly our argv.
    assert shlex.split(command[-1]) == argv


@pytest.mark.parametrize("sudo, privileged, expected_prefix", [
    pytest.param(True, True, ["sudo", "-n", "btrfs"], id="sudo-privileged"),
    pytest.param(True, False, ["btrfs"], id="sudo-unprivileged"),
    pytest.param(False, True, ["btrfs"], id="no-sudo-privileged"),
    pytest.param(False, False, ["btrfs"], id="no-sudo"),
])
def test_sudo_only_for_privileged_commands(sudo, privileged, expected_prefix):
    endpoint = SshEndpoint("nas", "/b", sudo=sudo)
    words = shlex.split(endpoint.command(btrfs.receive_argv("/b"), privileged)[-1])
    assert words == expected_prefix + ["receive", "/b"]


def test_ssh_argv_order_user_options_before_defaults():
    endpoint = parse_location("ssh://backup@nas:2222/b",
                              ssh_options=["ConnectTimeout=5", "IdentityFile=/root/my key"])
    command = endpoint.command(["true"], privileged=False)
    expected_options = []
    for option in ["ConnectTimeout=5", "IdentityFile=/root/my key"] + list(DEFAULT_SSH_OPTIONS):
        expected_options += ["-o", option]
    # ssh keeps the first value of an option it sees: user options must come first.
    assert command == (["ssh"] + expected_options + ["-p", "2222", "backup@nas", "--", "true"])


def test_ssh_argv_strips_ipv6_brackets_for_ssh():
    command = parse_location("ssh://[::1]:22/b").command(["true"])
    assert command[-3:] == ["::1", "--", "true"]
    assert command[command.index("-p") + 1] == "22"


def test_local_command_is_the_argv_unchanged():
    assert LocalEndpoint("/b").command(["btrfs", "receive", "/b"]) == ["btrfs", "receive", "/b"]


def test_shell_endpoint_cannot_run_commands():
    with pytest.raises(EndpointError):
        parse_location("shell://cat > /x").command(["btrfs", "subvolume", "list", "/"])


# -- batched remote output -----------------------------------------------------------------------

MARK = "__btrfs_backup_0123__"


def _batch(stdout, returncode=0, stderr=""):
    return CommandResult(["ssh"], returncode, stdout, stderr)


def test_split_batch_output_realistic():
    stdout = (
        "/srv/backup\n" "\n" + MARK + " 0\n"            # readlink -e: ends in a newline
        "\n" + MARK + " 1\n"                            # readlink -e of a missing path: no output
        "22 1 254:1 / / rw - ext4 /dev/vda1 rw" "\n" + MARK + " 0\n"  # no trailing newline
    )
    argvs = [["readlink", "-e", "/srv/backup"], ["readlink", "-e", "/nope"], ["cat", "x"]]
    results = split_batch_output(_batch(stdout), MARK, argvs)
    assert [(r.argv, r.returncode, r.stdout) for r in results] == [
        (argvs[0], 0, "/srv/backup\n"),
        (argvs[1], 1, ""),
        (argvs[2], 0, "22 1 254:1 / / rw - ext4 /dev/vda1 rw"),
    ]


def test_split_batch_output_ssh_unreachable():
    result = _batch("", 255, "ssh: connect to host nas port 22: Connection refused\n")
    with pytest.raises(EndpointError) as err:
        split_batch_output(result, MARK, [["true"]])
    assert "cannot reach ssh host" in str(err.value)
    assert "Connection refused" in str(err.value)


def test_split_batch_output_names_a_refused_key():
    result = _batch("", 255, "btrfs-backup@nas: Permission denied (publickey).\n")
    with pytest.raises(UnreachableError) as err:
        split_batch_output(result, MARK, [["true"]])
    assert "the server refused this host's key" in str(err.value)
    assert "revoked" in str(err.value) and "Permission denied (publickey)" in str(err.value)


@pytest.mark.parametrize("returncode, stderr, lost", [
    pytest.param(255, "Connection to nas closed by remote host.\n", True, id="ssh-lost-it"),
    pytest.param(255, "", True, id="ssh-lost-it-silently"),
    pytest.param(-9, "", True, id="ssh-killed"),
    pytest.param(1, "sh: 1: printf: I/O error\n", False, id="the-remote-shell-failed"),
])
def test_split_batch_output_connection_lost_midway(returncode, stderr, lost):
    """A batch cut short by ssh itself is a lost connection (the host said nothing about its
    commands); one whose remote shell ended early on its own is an answer that cannot be read."""
    result = _batch("a\n" + MARK + " 0\n", returncode, stderr)
    with pytest.raises(EndpointError) as err:
        split_batch_output(result, MARK, [["true"], ["true"]])
    assert "ended early" in str(err.value)
    assert isinstance(err.value, UnreachableError) is lost
    assert ("connection to ssh host was lost" in str(err.value)) is lost


def test_split_batch_output_garbled_status():
    with pytest.raises(EndpointError) as err:
        split_batch_output(_batch("\n" + MARK + " x\n"), MARK, [["true"]])
    assert "unexpected output" in str(err.value)


class _RunRemoteLineLocally(object):
    """A runner standing in for ssh: runs the remote line with sh, as the remote login shell would."""

    def __init__(self):
        self.argvs = []

    def run(self, argv, input_text=None):
        self.argvs.append(argv)
        line = argv[argv.index("--") + 1]
        proc = subprocess.run(["sh", "-c", line], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)
        return CommandResult(argv, proc.returncode, proc.stdout, proc.stderr)


def test_run_batch_uses_one_connection_and_splits_real_shell_output():
    runner = _RunRemoteLineLocally()
    endpoint = SshEndpoint("nas", NASTY_PATH)
    results = endpoint.run_batch(runner, [
        (["printf", "%s", NASTY_PATH], False),       # no trailing newline
        (["printf", "two\\nlines\\n"], False),
        (["sh", "-c", "exit 3"], False),
    ])
    assert len(runner.argvs) == 1  # one ssh process for the whole batch
    assert [(r.returncode, r.stdout) for r in results] == [
        (0, NASTY_PATH), (0, "two\nlines\n"), (3, "")]


class _SshG(object):
    """Answers `ssh -G` like OpenSSH would for a given Ciphers setting."""

    def __init__(self, ciphers):
        self.ciphers = ciphers
        self.calls = []

    def run(self, argv, input_text=None):
        self.calls.append(argv)
        return CommandResult(argv, 0, "user root\nciphers %s\nport 22\n" % self.ciphers, "")


@pytest.mark.parametrize("configured, offered", [
    pytest.param(OPENSSH_DEFAULT_CIPHERS, BULK_CIPHERS, id="default-order-gets-aes-gcm-first"),
    pytest.param("aes256-ctr", None, id="a-configured-order-is-left-alone"),
])
def test_bulk_ciphers_only_replace_the_openssh_default(configured, offered):
    endpoint = SshEndpoint("nas", "/b")
    connections = SshConnections(_SshG(configured))
    connections.attach(endpoint)
    try:
        options = [a for a in endpoint.ssh_argv() if a.startswith("Ciphers=")]
        assert options == (["Ciphers=" + offered] if offered else [])
        # Every cipher of the default set is still offered: no server that worked stops working.
        if offered:
            assert sorted(offered.split(",")) == sorted(OPENSSH_DEFAULT_CIPHERS.split(","))
        assert any(a.startswith("ControlPath=") for a in endpoint.ssh_argv())
    finally:
        connections.close()


class _MasterWaits(_SshG):
    """A real runner's stand-in (its commands may run beside each other): the master's `ssh -N`
    waits until the test says the run went on meanwhile (`went_on`), at most 5 s."""

    runs_beside = True

    def __init__(self):
        super().__init__(OPENSSH_DEFAULT_CIPHERS)
        import threading
        self.went_on = threading.Event()
        self.waited = None

    def run(self, argv, input_text=None):
        if "-N" in argv:
            self.waited = self.went_on.wait(5)
        return super().run(argv, input_text)


def test_the_shared_connection_opens_while_the_run_goes_on():
    """attach() returns at once; the host's first command waits until its connection is open and
    goes through it (its ControlPath, the cipher order `ssh -G` allowed)."""
    runner = _MasterWaits()
    endpoint = SshEndpoint("nas", "/b")
    connections = SshConnections(runner)
    try:
        connections.attach(endpoint)
        runner.went_on.set()  # only reached at once if attach did not wait for the master
        argv = endpoint.ssh_argv()
        assert runner.waited is True
        assert [c for c in runner.calls if "-N" in c], runner.calls
        assert "Ciphers=" + BULK_CIPHERS in argv and any(a.startswith("ControlPath=") for a in argv)
    finally:
        connections.close()


def test_endpoints_of_one_host_share_one_opening():
    """A pull's source and a destination on the same host (as the same user): one `ssh -N`, both
    through its socket, one `-O exit`; another user there gets a connection of its own."""
    runner = _MasterWaits()
    runner.went_on.set()
    source, dest = SshEndpoint("nas", "/data"), SshEndpoint("nas", "/backup")
    other = SshEndpoint("nas", "/backup", user="backup")
    connections = SshConnections(runner, [source, dest, other])
    try:
        paths = [next(a for a in e.ssh_argv() if a.startswith("ControlPath=")) for e in (source, dest, other)]
        assert paths[0] == paths[1]
        assert len([c for c in runner.calls if "-N" in c]) == 2, runner.calls
    finally:
        connections.close()
    assert len([c for c in runner.calls if "exit" in c]) == 2, runner.calls


@pytest.mark.parametrize("options", [["ControlMaster=auto", "ControlPath=/home/me/.ssh/cm-%C", "ControlPersist=yes"],
                                     ["ControlMaster=no"], ["controlpath /run/me/%C"]])
def test_a_master_of_the_users_own_connection_sharing_is_neither_opened_nor_ended(options):
    """The user's ControlMaster or ControlPath (theirs come first, and ssh keeps the first): the
    run opens no master, and ends none at its close (theirs may serve their other sessions); a
    host of the run's own sharing beside it gets both."""
    runner = _SshG("aes256-ctr")
    theirs, ours = SshEndpoint("nas", "/b", ssh_options=options), SshEndpoint("backup", "/b")
    with SshConnections(runner, [theirs, ours]):
        pass
    for opened in ("-N", "exit"):
        assert [c[-1] for c in runner.calls if opened in c] == ["backup"], runner.calls


@pytest.mark.parametrize("tmpdir", ["given", "missing", "unset"])
def test_the_control_folder_is_private_and_removed(tmp_path, monkeypatch, tmpdir):
    """In $TMPDIR, else /tmp (a $TMPDIR that does not exist too), mode 0700; gone after close()."""
    if tmpdir == "unset":
        monkeypatch.delenv("TMPDIR", raising=False)
    else:
        monkeypatch.setenv("TMPDIR", str(tmp_path if tmpdir == "given" else tmp_path / "missing"))
    endpoint = SshEndpoint("nas", "/b")
    connections = SshConnections(_SshG("aes256-ctr"), [endpoint])
    folder = os.path.dirname(endpoint.control_path)
    try:
        assert os.path.dirname(folder) == (str(tmp_path) if tmpdir == "given" else "/tmp")
        assert os.stat(folder).st_mode & 0o777 == 0o700
    finally:
        connections.close()
    assert not os.path.exists(folder)


def test_user_cipher_option_wins_over_the_bulk_order():
    endpoint = SshEndpoint("nas", "/b", ssh_options=["Ciphers=aes256-ctr"])
    endpoint.bulk_ciphers = True
    argv = endpoint.ssh_argv()
    # ssh keeps the first value it sees for an option: the user's comes first.
    assert argv.index("Ciphers=aes256-ctr") < argv.index("Ciphers=" + BULK_CIPHERS)


# -- a host whose shared connection failed: every command of the run fails at once ---------------

class _DeadHost:
    """ssh -G answers; the shared connection times out; any other command is recorded."""

    STDERR = "ssh: connect to host nas port 22: Connection timed out"

    def __init__(self):
        self.commands = []

    def run(self, argv, input_text=None):
        if "-G" in argv:
            return CommandResult(argv, 0, "ciphers aes256-ctr\n", "")
        if "-N" in argv:
            return CommandResult(argv, 255, "", self.STDERR + "\n")
        if "-O" not in argv:
            self.commands.append(argv)
        return CommandResult(argv, 255, "", self.STDERR + "\n")


@pytest.mark.parametrize("command", [
    pytest.param(lambda e, r: e.run(r, ["btrfs", "--version"]), id="run"),
    pytest.param(lambda e, r: e.run_batch(r, [(["btrfs", "--version"], True)]), id="run-batch"),
    pytest.param(lambda e, r: effects.make_folder(e, r, "/backup/new"), id="an-effect"),
    pytest.param(lambda e, r: e.lock_store(r, "/data/snapshot").write(LockTable()), id="lock-write"),
])
def test_a_host_whose_shared_connection_failed_runs_nothing_more(command):
    """Each command would wait for the same timeout again: all of the run's commands for that
    host fail at once with ssh's first answer, and no ssh is started for them."""
    runner = _DeadHost()
    endpoint = SshEndpoint("nas", "/backup")
    with SshConnections(runner, [endpoint]):
        with pytest.raises(UnreachableError, match="Connection timed out"):
            command(endpoint, runner)
    assert runner.commands == []
