"""engine.host.endpoints.ssh_ciphers: whether real config files set Ciphers (their Include lines
followed as ssh follows them), and the memo of what `ssh -G` told of an ssh program; with the
shared connection's opening, which asks `ssh -G` once per program."""

import json
import os
import shutil
import subprocess

import pytest

from engine.host.endpoints import ssh_ciphers
from engine.host.endpoints.ssh import BULK_CIPHERS, OPENSSH_DEFAULT_CIPHERS, SshConnections, SshEndpoint
from engine.host.runner import CommandResult


@pytest.fixture
def configs(tmp_path):
    """A home with ~/.ssh and a system config folder, both empty: (home, system config path)."""
    home, system = tmp_path / "home", tmp_path / "etc-ssh"
    (home / ".ssh").mkdir(parents=True)
    system.mkdir()
    return home, system / "ssh_config"


def sets(configs):
    home, system_config = configs
    return ssh_ciphers.config_sets_ciphers(str(home), str(system_config))


def test_no_config_files_set_nothing(configs):
    assert sets(configs) is False


def test_the_system_config_and_its_wildcard_include(configs):
    home, system_config = configs
    (system_config.parent / "ssh_config.d").mkdir()
    system_config.write_text("Include /etc/ssh/ssh_config.d/*.conf\nInclude ssh_config.d/*.conf\nHost *\n  SendEnv LANG\n")
    assert sets(configs) is False
    (system_config.parent / "ssh_config.d" / "20-crypto.conf").write_text("Ciphers aes256-gcm@openssh.com\n")
    assert sets(configs) is True  # relative to the system's folder


@pytest.mark.parametrize("pattern, matched", [
    pytest.param("conf.d/*.conf", ["a.conf", "b.conf"], id="wildcard-in-the-name"),
    pytest.param("conf.d/.*", [".hidden"], id="a-dot-pattern-matches-dot-names"),
    pytest.param("c*/b.conf", ["b.conf"], id="wildcard-in-the-folder"),
    pytest.param("missing.d/*", [], id="no-such-folder"),
])
def test_wildcard_includes_match_as_glob_does(configs, pattern, matched):
    home, system_config = configs
    folder = system_config.parent / "conf.d"
    folder.mkdir()
    for name in ("a.conf", "b.conf", ".hidden", "notes.txt"):
        (folder / name).write_text("Port 22\n")
    assert ssh_ciphers._included(pattern, str(system_config.parent), None) == [  # pylint: disable=protected-access
        str(folder / name) for name in matched]


def test_the_users_config_and_its_includes(configs):
    home, _system_config = configs
    (home / ".ssh" / "config").write_text("Include hosts/*\nInclude ~/more.conf\n")
    (home / ".ssh" / "hosts").mkdir()
    (home / ".ssh" / "hosts" / "nas").write_text("Host nas\n  Port 2222\n")
    assert sets(configs) is False
    (home / "more.conf").write_text("Host old\n  Ciphers aes128-cbc\n")
    assert sets(configs) is True  # `~` is the user's home in a user's Include


@pytest.mark.parametrize("include", ["%d/extra.conf", "${HOME}/extra.conf", "~other/x.conf"])
def test_an_include_only_ssh_can_resolve_is_not_guessed(configs, include):
    home, _system_config = configs
    (home / ".ssh" / "config").write_text("Include %s\n" % include)
    assert sets(configs) is None


def test_an_include_loop_is_not_followed_forever(configs):
    home, _system_config = configs
    (home / ".ssh" / "config").write_text("Include config\n")
    assert sets(configs) is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file of mode 000")
def test_a_config_that_cannot_be_read_cannot_tell(configs):
    home, _system_config = configs
    (home / ".ssh" / "config").write_text("Port 22\n")
    (home / ".ssh" / "config").chmod(0)
    assert sets(configs) is None


def test_a_config_folder_in_place_of_a_file_cannot_tell(configs):
    home, _system_config = configs
    (home / ".ssh" / "config").mkdir()
    assert sets(configs) is None


def test_this_machines_verdict_agrees_with_ssh_G():
    """The real files here: where the scan says nobody sets Ciphers, ssh -G shows the list that
    ssh -G shows with no config at all (-F /dev/null): the program's own."""
    if shutil.which("ssh") is None:
        pytest.skip("no ssh client")
    if ssh_ciphers.config_sets_ciphers() is not False:
        pytest.skip("this machine's ssh config sets Ciphers or cannot be read")

    def ciphers(*extra):
        out = subprocess.run(["ssh", *extra, "-G", "backup.invalid"], stdout=subprocess.PIPE, text=True,
                             check=True).stdout
        return [line for line in out.splitlines() if line.startswith("ciphers ")]

    assert ciphers() == ciphers("-F", "/dev/null")


# -- the memo of ssh programs -------------------------------------------------------------------

@pytest.fixture
def program(tmp_path):
    path = tmp_path / "bin" / "ssh"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexec ssh \"$@\"\n")
    path.chmod(0o755)
    return str(path)


def test_the_memo_knows_a_program_it_was_told_of(program):
    assert ssh_ciphers.known_default_fits(program) is None
    ssh_ciphers.remember_default_fits(program, True)
    assert ssh_ciphers.known_default_fits(program) is True
    ssh_ciphers.remember_default_fits(program, False)
    assert ssh_ciphers.known_default_fits(program) is False


def test_a_changed_program_is_asked_again(program):
    ssh_ciphers.remember_default_fits(program, True)
    with open(program, "a", encoding="utf-8") as handle:
        handle.write("# upgraded\n")
    assert ssh_ciphers.known_default_fits(program) is None


@pytest.mark.parametrize("content", ["not json", "[]", '{"%s": {"identity": "x", "default_fits": true}}',
                                     '{"%s": {"identity": null, "default_fits": "yes"}}'])
def test_a_memo_that_is_not_one_knows_nothing(program, job_state_dir, content):
    (job_state_dir / ssh_ciphers.MEMO_NAME).write_text(content.replace("%s", program))
    assert ssh_ciphers.known_default_fits(program) is None
    ssh_ciphers.remember_default_fits(program, True)  # and is replaced by one
    assert json.loads((job_state_dir / ssh_ciphers.MEMO_NAME).read_text())[program]["default_fits"] is True


def test_no_state_folder_keeps_no_memo(program, job_state_dir, monkeypatch):
    monkeypatch.setenv("BTRFS_BACKUP_STATE_DIR", str(job_state_dir / "missing"))
    ssh_ciphers.remember_default_fits(program, True)
    assert not (job_state_dir / "missing").exists()
    assert ssh_ciphers.known_default_fits(program) is None


def test_program_path_searches_path(program, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent:%s" % os.path.dirname(program))
    assert ssh_ciphers.program_path("ssh") == program
    assert ssh_ciphers.program_path(program) == program
    assert ssh_ciphers.program_path("no-such-ssh") is None


# -- the shared connection's opening asks ssh -G once per program ------------------------------

class _SshG:
    """A fake runner: ssh -G shows `ciphers`; every other ssh call succeeds."""

    def __init__(self, ciphers):
        self.ciphers, self.calls = ciphers, []

    def run(self, argv, input_text=None):
        self.calls.append(argv)
        return CommandResult(argv, 0, "user root\nciphers %s\nport 22\n" % self.ciphers, "")

    def asked(self):
        return len([c for c in self.calls if "-G" in c])


def opened(runner, program, **options):
    endpoint = SshEndpoint("nas", "/b", **options)
    endpoint.ssh_binary = program
    connections = SshConnections(runner)
    connections.attach(endpoint)
    try:
        return [a for a in endpoint.ssh_argv() if a.startswith("Ciphers=")]
    finally:
        connections.close()


@pytest.fixture
def no_configs(monkeypatch):
    monkeypatch.setattr(ssh_ciphers, "config_sets_ciphers", lambda: False)


@pytest.mark.parametrize("shown, offered", [(OPENSSH_DEFAULT_CIPHERS, ["Ciphers=" + BULK_CIPHERS]),
                                            ("aes256-ctr,aes128-ctr", [])])
def test_ssh_G_is_asked_once_per_program(no_configs, program, shown, offered):
    runner = _SshG(shown)
    assert opened(runner, program) == offered and runner.asked() == 1
    assert opened(runner, program) == offered and runner.asked() == 1  # the memo answered
    with open(program, "a", encoding="utf-8") as handle:
        handle.write("# another version\n")
    assert opened(runner, program) == offered and runner.asked() == 2


def test_a_config_that_sets_ciphers_is_always_asked(program, monkeypatch):
    monkeypatch.setattr(ssh_ciphers, "config_sets_ciphers", lambda: True)
    runner = _SshG(OPENSSH_DEFAULT_CIPHERS)  # set for another host: this one keeps the default
    assert opened(runner, program) == ["Ciphers=" + BULK_CIPHERS]
    assert opened(runner, program) == ["Ciphers=" + BULK_CIPHERS]
    assert runner.asked() == 2 and ssh_ciphers.known_default_fits(program) is None


def test_the_users_ciphers_need_no_question(no_configs, program):
    runner = _SshG(OPENSSH_DEFAULT_CIPHERS)
    assert opened(runner, program, ssh_options=["Ciphers=aes256-ctr"]) == ["Ciphers=aes256-ctr"]  # theirs alone
    assert runner.asked() == 0


def test_an_answer_for_an_option_that_reads_more_config_is_not_kept(no_configs, program):
    runner = _SshG(OPENSSH_DEFAULT_CIPHERS)
    opened(runner, program, ssh_options=["Include=/home/me/extra"])
    opened(runner, program, ssh_options=["Include=/home/me/extra"])
    assert runner.asked() == 2 and ssh_ciphers.known_default_fits(program) is None
