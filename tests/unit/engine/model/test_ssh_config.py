"""engine.model.ssh_config: ssh_config text read as ssh reads it, and when a run may choose ssh's
cipher order without asking `ssh -G`."""

import pytest

from engine.model.ssh_config import bulk_ciphers_verdict, directives, includes, option_name, sets_ciphers


@pytest.mark.parametrize("text, expected", [
    pytest.param("Host nas\n  Port 2222\n", [("host", ["nas"]), ("port", ["2222"])], id="keyword-space-value"),
    pytest.param("Ciphers=aes256-ctr\n", [("ciphers", ["aes256-ctr"])], id="keyword-equals-value"),
    pytest.param("CIPHERS = +aes128-cbc", [("ciphers", ["+aes128-cbc"])], id="any-case-and-blanks-around-equals"),
    pytest.param("# Ciphers aes256-ctr\n   #Ciphers x\n\n", [], id="comment-lines"),
    pytest.param("SendEnv LANG LC_* # the locale\n", [("sendenv", ["LANG", "LC_*"])], id="trailing-comment"),
    pytest.param('Include "/etc/ssh/my configs/*.conf" other\n', [("include", ["/etc/ssh/my configs/*.conf", "other"])],
                 id="quoted-argument"),
    pytest.param("\tHostName\tnas.example\r\n", [("hostname", ["nas.example"])], id="tabs-and-crlf"),
])
def test_directives(text, expected):
    assert directives(text) == expected


@pytest.mark.parametrize("text, expected", [
    pytest.param("Host *\n    SendEnv LANG LC_*\n    HashKnownHosts yes\n", False, id="debian-default"),
    pytest.param("Host backup\n  Ciphers aes256-ctr\n", True, id="in-a-host-block"),
    pytest.param("Match exec true\n  ciphers=-chacha20-poly1305@openssh.com\n", True, id="in-a-match-block"),
    pytest.param("# Ciphers aes256-ctr\n", False, id="commented-out"),
    pytest.param("Host ciphers\n  Port 2\n", False, id="a-host-named-so"),
])
def test_sets_ciphers(text, expected):
    assert sets_ciphers(text) is expected


def test_includes_in_order():
    text = "Include /etc/ssh/ssh_config.d/*.conf\nHost a\n  Include one two\n"
    assert includes(text) == ["/etc/ssh/ssh_config.d/*.conf", "one", "two"]


@pytest.mark.parametrize("option, name", [
    ("Ciphers=aes256-ctr", "ciphers"), ("ControlPath /run/%C", "controlpath"), ("  Port = 22", "port"),
])
def test_option_name(option, name):
    assert option_name(option) == name


@pytest.mark.parametrize("options, config_sets, default_fits, verdict", [
    pytest.param([], False, True, True, id="nobody-chose-and-the-program-default-fits"),
    pytest.param([], False, False, False, id="nobody-chose-and-the-program-has-another-default"),
    pytest.param([], False, None, None, id="program-not-known-yet: ask"),
    pytest.param([], True, True, None, id="a-config-sets-ciphers (maybe for another host): ask"),
    pytest.param([], None, True, None, id="configs-cannot-be-read: ask"),
    pytest.param(["Ciphers=aes256-ctr"], False, True, False, id="the-users-own-ciphers-come-first"),
    pytest.param(["ciphers aes256-ctr"], None, None, False, id="the-users-own-ciphers-whatever-the-configs-say"),
    pytest.param(["Include=/home/me/extra"], False, True, None, id="an-option-that-reads-more-config: ask"),
    pytest.param(["Port=2222", "User=backup"], False, True, True, id="other-options-change-nothing"),
])
def test_bulk_ciphers_verdict(options, config_sets, default_fits, verdict):
    assert bulk_ciphers_verdict(options, config_sets, default_fits) is verdict
