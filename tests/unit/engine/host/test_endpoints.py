"""engine.host.endpoints: location parsing, dest ids, the ssh command line and batched remote output."""

import os
import shlex
import subprocess

import pytest

from engine.host import btrfs
from engine.host.endpoints import (BULK_CIPHERS, DEFAULT_SSH_OPTIONS, OPENSSH_DEFAULT_CIPHERS,
                              LocalEndpoint, ShellEndpoint, SshConnections, SshEndpoint,
                              parse_location, split_batch_output)
from engine.model.errors import ConfigError, EndpointError, UnreachableError
from engine.host.runner import CommandResult


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


def test_split_batch_output_connection_lost_midway():
    result = _batch("a\n" + MARK + " 0\n", 255, "Connection to nas closed by remote host.\n")
    with pytest.raises(EndpointError) as err:
        split_batch_output(result, MARK, [["true"], ["true"]])
    assert "ended early" in str(err.value)


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


def test_user_cipher_option_wins_over_the_bulk_order():
    endpoint = SshEndpoint("nas", "/b", ssh_options=["Ciphers=aes256-ctr"])
    endpoint.bulk_ciphers = True
    argv = endpoint.ssh_argv()
    # ssh keeps the first value it sees for an option: the user's comes first.
    assert argv.index("Ciphers=aes256-ctr") < argv.index("Ciphers=" + BULK_CIPHERS)
