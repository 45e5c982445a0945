"""engine.model.receive_errors: btrfs receive's ERROR lines are noted while its stderr is passed on."""

import io
import os

import pytest

from engine.model.receive_errors import StderrWatch, broken_receive_refusal, is_error_line


@pytest.mark.parametrize("line, error", [
    (b"ERROR: clone: source subvol path /a unreachable from /srv/backups/b\n", True),
    (b"ERROR: cannot find parent subvolume\n", True),
    (b"  ERROR: indented\n", True),
    (b"At subvol 20260101-000000\n", False),
    (b"At snapshot 20260101-000000\n", False),
    (b"WARNING: something\n", False),
    (b"error: lower case is not btrfs-progs' prefix\n", False),
    (b"", False),
])
def test_an_error_line_is_one_that_btrfs_progs_prefixes_so(line, error):
    assert is_error_line(line) is error


def test_the_refusal_names_the_first_error_and_how_many_more():
    assert broken_receive_refusal(["ERROR: clone: x unreachable"]) == (
        "btrfs receive reported an error yet ended with status 0 (ERROR: clone: x unreachable): what it "
        "made is not a whole backup (a crafted or damaged stream)")
    assert "(ERROR: a; and 2 more)" in broken_receive_refusal(["ERROR: a", "ERROR: b", "ERROR: c"])


def test_every_line_is_passed_on_and_the_errors_are_kept():
    lines = [b"At subvol x\n", b"ERROR: clone: source subvol path a unreachable from b\n", b"last, no newline"]
    read_end, write_end = os.pipe()
    out = io.BytesIO()
    with open(read_end, "rb") as pipe:
        watch = StderrWatch(pipe, out)
        with open(write_end, "wb") as writer:
            writer.write(b"".join(lines))
        assert watch.finish() == ["ERROR: clone: source subvol path a unreachable from b"]
    assert out.getvalue() == b"".join(lines)


def test_a_client_gone_does_not_stop_the_reading():
    class Gone(io.BytesIO):
        def write(self, data):
            raise BrokenPipeError(32, "Broken pipe")
    read_end, write_end = os.pipe()
    with open(read_end, "rb") as pipe:
        watch = StderrWatch(pipe, Gone())
        with open(write_end, "wb") as writer:
            writer.write(b"ERROR: one\n" * 10000)  # more than a pipe holds
        assert len(watch.finish()) == 20
