"""engine.frontends.argfiles: btrfs-backup 0.3's `@argfile` format (one flag, `--opt value` or argument a line)."""

import os

import pytest

from engine.frontends.argfiles import expand_argfiles, split_line
from engine.model.errors import ConfigError


@pytest.mark.parametrize("line, expected", [
    pytest.param("# This is a comment and thus ignored", [], id="comment"),
    pytest.param("        # indented comment", [], id="indented-comment"),
    pytest.param("", [], id="empty"),
    pytest.param("   \t  ", [], id="blank"),
    pytest.param("        -p home", ["-p", "home"], id="indented-short-option"),
    pytest.param("--num-backups   3", ["--num-backups", "3"], id="several-spaces"),
    pytest.param("--ssh-opt IdentityFile=/root/my key", ["--ssh-opt", "IdentityFile=/root/my key"],
                 id="space-kept-in-value"),
    pytest.param("--ssh-opt\tCipher=aes256-ctr", ["--ssh-opt", "Cipher=aes256-ctr"], id="tab"),
    pytest.param("-S", ["-S"], id="flag-alone"),
    pytest.param("--snapshot-prefix=home", ["--snapshot-prefix=home"], id="equals-form"),
    pytest.param("/home", ["/home"], id="positional-path"),
    pytest.param("shell://cat > /x y", ["shell://cat > /x y"], id="positional-shell-url-with-spaces"),
    pytest.param("/my backups/home  ", ["/my backups/home"], id="positional-trailing-space-stripped"),
])
def test_split_line(line, expected):
    assert split_line(line) == expected


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# The btrfs-backup 0.3 README's two example files: one includes the other.
HOME_CONF = """\
# This is a comment and thus ignored, as well as blank lines.

# Include another configuration file here.
@defaults.conf

        # Indentation has no effect.
        -p home

# This is the source.
/home

# Back up to both local and remote storage.
/backup/home
ssh://backupserver/backup/home
"""

DEFAULTS_CONF = """\
# This file gets included by the other one.

--num-snapshots 1
--num-backups 3
"""

EXPANDED = ["--num-snapshots", "1", "--num-backups", "3", "-p", "home",
            "/home", "/backup/home", "ssh://backupserver/backup/home"]


def test_readme_example_with_relative_include(tmp_path):
    _write(tmp_path / "etc" / "btrfs-backup" / "defaults.conf", DEFAULTS_CONF)
    home = _write(tmp_path / "etc" / "btrfs-backup" / "home.conf", HOME_CONF)
    assert expand_argfiles(["@" + str(home)]) == EXPANDED


def test_include_is_relative_to_the_including_file_not_the_cwd(tmp_path, monkeypatch):
    _write(tmp_path / "conf" / "defaults.conf", DEFAULTS_CONF)
    _write(tmp_path / "defaults.conf", "--num-snapshots 99\n")  # a decoy next to the cwd
    _write(tmp_path / "conf" / "home.conf", HOME_CONF)
    monkeypatch.chdir(tmp_path)
    assert expand_argfiles(["@conf/home.conf"]) == EXPANDED


def test_nested_include_in_a_subfolder(tmp_path):
    _write(tmp_path / "a" / "top.conf", "@sub/mid.conf\n-q\n")
    _write(tmp_path / "a" / "sub" / "mid.conf", "@../leaf.conf\n-S\n")  # relative to a/sub
    _write(tmp_path / "a" / "leaf.conf", "-T\n")
    assert expand_argfiles(["@" + str(tmp_path / "a" / "top.conf")]) == ["-T", "-S", "-q"]


def test_mixing_direct_arguments_and_argfiles_keeps_the_order(tmp_path):
    defaults = _write(tmp_path / "defaults.conf", DEFAULTS_CONF)
    assert expand_argfiles(["-v", "debug", "@" + str(defaults), "/home", "/backup"]) == [
        "-v", "debug", "--num-snapshots", "1", "--num-backups", "3", "/home", "/backup"]


def test_same_file_twice_is_not_a_loop(tmp_path):
    _write(tmp_path / "leaf.conf", "-q\n")
    top = _write(tmp_path / "top.conf", "@leaf.conf\n@leaf.conf\n")
    assert expand_argfiles(["@" + str(top)]) == ["-q", "-q"]


def test_lone_at_sign_is_an_ordinary_argument():
    assert expand_argfiles(["@", "/home"]) == ["@", "/home"]


@pytest.mark.parametrize("files, start, chain", [
    pytest.param({"a.conf": "@a.conf\n"}, "a.conf", ["a.conf", "a.conf"], id="self-include"),
    pytest.param({"a.conf": "-q\n@b.conf\n", "b.conf": "@a.conf\n"}, "a.conf",
                 ["a.conf", "b.conf", "a.conf"], id="mutual-include"),
    pytest.param({"a.conf": "@b.conf\n", "b.conf": "@c.conf\n", "c.conf": "@b.conf\n"}, "a.conf",
                 ["a.conf", "b.conf", "c.conf", "b.conf"], id="loop-below-the-top"),
])
def test_include_loop_is_an_error_naming_the_chain(tmp_path, files, start, chain):
    for name, text in files.items():
        _write(tmp_path / name, text)
    with pytest.raises(ConfigError) as err:
        expand_argfiles(["@" + str(tmp_path / start)])
    expected = " -> ".join(os.path.join(str(tmp_path), name) for name in chain)
    assert str(err.value) == "argument file include loop: " + expected


def test_missing_file_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "nope.conf"
    with pytest.raises(ConfigError) as err:
        expand_argfiles(["-q", "@" + str(missing)])
    assert "cannot read argument file %s" % missing in str(err.value)
    assert "No such file or directory" in str(err.value)


def test_missing_nested_file_is_named_with_its_resolved_path(tmp_path):
    top = _write(tmp_path / "top.conf", "@gone.conf\n")
    with pytest.raises(ConfigError) as err:
        expand_argfiles(["@" + str(top)])
    assert str(tmp_path / "gone.conf") in str(err.value)


def test_binary_file_is_a_config_error(tmp_path):
    binary = tmp_path / "image.conf"
    binary.write_bytes(b"\xff\xfe\x00-p home\n")
    with pytest.raises(ConfigError):
        expand_argfiles(["@" + str(binary)])
