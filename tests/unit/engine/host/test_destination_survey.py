"""engine.host.destination_survey: one remote command's answer -> the folder's listing, the tools, the mode."""

import shlex

import pytest

from engine.host.capabilities import EndToolsProbe
from engine.host.destination_survey import parse_survey, survey, survey_commands
from engine.host.endpoints.ssh import SshEndpoint
from engine.host.runner import CommandResult
from engine.host.streams import EndTools
from engine.model.errors import EndpointError, MissingPathError, NotBtrfsError, UnreachableError

FOLDER = "/srv/backups/web1"
U_B1 = "0f8a12d7-516c-5140-a220-f623ad8b9d4f"
MOUNTINFO = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
43 22 0:39 / /srv/backups rw,relatime shared:30 - btrfs /dev/sdb rw,subvolid=5,subvol=/
"""
LIST = ("ID 256 gen 10 top level 5 parent_uuid -                                    "
        "received_uuid %s uuid 5b0e9c59-1f7f-4a4e-8f4e-0c6d2a1b9e01 path web1/b1\n" % U_B1)


def ok(stdout=""):
    return CommandResult(["x"], 0, stdout, "")


def failed(stderr="", returncode=1):
    return CommandResult(["x"], returncode, "", stderr)


def answers(readlink=ok(FOLDER + "\n"), mountinfo=ok(MOUNTINFO), listed=ok(LIST), readonly=ok(LIST),
            btrfs=ok("btrfs-progs v6.2\n"), zstd=ok("*** Zstandard CLI v1.5.4\n"),
            mode=ok("btrfs-backup-serve-mode none\n")):
    """The results in survey_commands() order, each replaceable."""
    return [readlink, mountinfo, listed, readonly, btrfs, zstd, mode]


def test_the_commands_are_the_listing_round_then_the_tools_and_the_mode():
    assert [argv for argv, _ in survey_commands(FOLDER)] == [
        ["readlink", "-e", "--", FOLDER], ["cat", "/proc/self/mountinfo"],
        ["btrfs", "subvolume", "list", "-a", "-u", "-q", "-R", FOLDER],
        ["btrfs", "subvolume", "list", "-a", "-u", "-q", "-R", "-r", FOLDER],
        ["btrfs", "--version"], ["zstd", "--version"], ["echo", "btrfs-backup-serve-mode", "none"]]
    # Only btrfs needs root (sudo -n where asked).
    assert [argv[0] for argv, privileged in survey_commands(FOLDER) if privileged] == ["btrfs"] * 3


# (what the host answered, the listing's children or the error class, zstd, protocol 2, mode)
CASES = [
    pytest.param({}, ["b1"], True, True, "none", id="plain-host"),
    pytest.param({"mode": ok("btrfs-backup-serve-mode append-only\n")}, ["b1"], True, True, "append-only",
                 id="append-only-serve"),
    pytest.param({"zstd": failed("sh: 1: zstd: not found", 127)}, ["b1"], False, True, "none",
                 id="no-zstd-there"),
    pytest.param({"btrfs": ok("btrfs-progs v5.10\n")}, ["b1"], True, False, "none", id="old-btrfs-progs"),
    pytest.param({"btrfs": failed("sh: 1: btrfs: not found", 127),
                  "listed": failed("sh: 1: btrfs: not found", 127),
                  "readonly": failed("sh: 1: btrfs: not found", 127)},
                 EndpointError, True, False, "none", id="no-btrfs-there"),
    pytest.param({"readlink": failed()}, MissingPathError, True, True, "none", id="folder-missing"),
    pytest.param({"mountinfo": ok(MOUNTINFO.replace("btrfs /dev/sdb", "ext4 /dev/sdb"))},
                 NotBtrfsError, True, True, "none", id="not-btrfs"),
    pytest.param({"listed": ok("ID x gen\n")}, EndpointError, True, True, "none", id="garbled-listing"),
    pytest.param({"mode": ok("something else\n")}, ["b1"], True, True, None, id="garbled-mode-unknown"),
    pytest.param({"mode": failed("refused", 126)}, ["b1"], True, True, None, id="mode-refused-unknown"),
]


@pytest.mark.parametrize("changed, listed, zstd, proto2, mode", CASES)
def test_parse_survey(changed, listed, zstd, proto2, mode):
    found = parse_survey(FOLDER, answers(**changed))
    if isinstance(listed, list):
        assert found.problem is None and sorted(found.listing.children) == listed
        assert found.listing.children["b1"].received_uuid == U_B1
    else:
        assert found.listing is None and isinstance(found.problem, listed), found.problem
    assert (found.tools.zstd, found.tools.proto2, found.mode) == (zstd, proto2, mode)


SERVE_VERSION = "btrfs-progs v6.2\nbtrfs-backup-serve-accepts mkdir-receive\n"


@pytest.mark.parametrize("changed, features", [
    pytest.param({}, set(), id="plain-host"),
    pytest.param({"btrfs": ok(SERVE_VERSION), "mode": ok("btrfs-backup-serve-mode append-only\n")},
                 {"mkdir-receive"}, id="serve-that-names-its-features"),
    pytest.param({"mode": ok("btrfs-backup-serve-mode open\n")}, set(), id="serve-from-before-its-features"),
])
def test_serve_names_its_features_after_btrfs_version_and_the_tools_read_as_before(changed, features):
    found = parse_survey(FOLDER, answers(**changed))
    assert found.features == features and found.problem is None
    assert (found.tools.zstd, found.tools.proto2) == (True, True)


def learned(mode, features=frozenset()):
    """What a run's probe knows of a destination after its survey answered `mode` and `features`."""
    endpoint = SshEndpoint("backup", FOLDER)
    probe = EndToolsProbe(runner=None)
    probe.learn(endpoint, EndTools(zstd=True, proto2=True), mode, frozenset(features))
    return probe, endpoint


@pytest.mark.parametrize("mode, features, makes_folder", [
    pytest.param("none", (), True, id="plain-host"),
    pytest.param("append-only", ("mkdir-receive",), True, id="serve-that-says-it"),
    pytest.param("open", ("mkdir-receive", "later-feature"), True, id="open-serve-that-says-it"),
    pytest.param("append-only", (), False, id="serve-from-before-it"),
    pytest.param("open", ("later-feature",), False, id="serve-with-other-features"),
    pytest.param(None, (), False, id="unknown-a-serve-from-before-the-mode-probe"),
    pytest.param(None, ("mkdir-receive",), False, id="unknown-mode-whatever-it-says"),
])
def test_the_receive_makes_its_folder_only_where_the_destination_takes_it(mode, features, makes_folder):
    probe, endpoint = learned(mode, features)
    assert probe.receive_makes_folder(endpoint) is makes_folder


def test_the_listings_own_messages_are_kept():
    assert str(parse_survey(FOLDER, answers(readlink=failed())).problem) == f"{FOLDER} does not exist"
    problem = parse_survey(FOLDER, answers(listed=failed("ERROR: can't access '/srv': Permission denied"))).problem
    assert str(problem) == f"cannot list subvolumes of {FOLDER}: ERROR: can't access '/srv': Permission denied"


def test_an_answer_of_the_wrong_length_is_an_error():
    with pytest.raises(EndpointError, match="unexpected answer"):
        parse_survey(FOLDER, answers()[:-1])


class _Host:
    """A runner that answers the one ssh command with `stdout` (markers filled in when asked)."""

    def __init__(self, stdout, returncode=0, stderr="", fill_markers=True):
        self.stdout, self.returncode, self.stderr, self.fill = stdout, returncode, stderr, fill_markers
        self.ran = []

    def run(self, argv, **_kwargs):
        self.ran.append(argv)
        line = argv[-1]
        marker = line.split("__btrfs_backup_")[1].split("__")[0] if "__btrfs_backup_" in line else ""
        stdout = self.stdout.replace("MARK", f"__btrfs_backup_{marker}__") if self.fill else self.stdout
        return CommandResult(argv, self.returncode, stdout, self.stderr)


def _whole_answer():
    parts = [FOLDER + "\n", MOUNTINFO, LIST, LIST, "btrfs-progs v6.2\n", "zstd v1.5\n",
             "btrfs-backup-serve-mode open\n"]
    return "".join(f"{part}\nMARK 0\n" for part in parts)


def test_one_remote_command_over_ssh_answers_everything():
    host = _Host(_whole_answer())
    found = survey(SshEndpoint("backup.example.org", FOLDER, user="web1"), host)
    assert len(host.ran) == 1 and found.mode == "open" and sorted(found.listing.children) == ["b1"]
    # Every word of the remote line is quoted: the only shell syntax is the batch's own.
    remote = host.ran[0][-1]
    assert shlex.quote(FOLDER) in remote and remote.count("; printf") == len(survey_commands(FOLDER))


@pytest.mark.parametrize("stdout, returncode, stderr, error, words", [
    pytest.param("", 255, "ssh: connect to host backup.example.org port 22: Connection refused", UnreachableError,
                 "Connection refused", id="unreachable"),
    pytest.param(FOLDER + "\nMARK 0\n" + MOUNTINFO, 0, "", EndpointError, "ended early", id="cut-short"),
    pytest.param(FOLDER + "\nMARK 0\n" + MOUNTINFO, 255, "", UnreachableError, "was lost", id="connection-lost-midway"),
    pytest.param(_whole_answer().replace("MARK 0", "MARK zero", 1), 0, "", EndpointError, "unexpected output",
                 id="garbled-status"),
    pytest.param("", 126, "refused: 'echo btrfs-backup-serve-mode none' is not a command that a backup sends",
                 EndpointError, "refused", id="older-serve-refuses"),
])
def test_an_answer_that_cannot_be_read_is_an_error(stdout, returncode, stderr, error, words):
    host = _Host(stdout, returncode, stderr)
    with pytest.raises(error) as raised:
        survey(SshEndpoint("backup.example.org", FOLDER), host)
    assert words in str(raised.value)
