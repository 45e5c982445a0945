"""engine.frontends.serve.receive_args: how serve confines `btrfs receive` to the host's own folder."""

import pytest

from engine.frontends.serve import receive_args

HOST = "/srv/backups/web1"

CASES = [
    # A host folder that is a subvolume is receive's root: parents and clone sources outside it
    # are unreachable (a crafted stream cannot take another host's backup).
    pytest.param([], HOST + "/home", HOST,
                 ["receive", "--chroot", "-m", HOST, HOST + "/home"], id="subvolume-root"),
    pytest.param(["-vv"], HOST + "/home", HOST,
                 ["receive", "--chroot", "-m", HOST, "-vv", HOST + "/home"], id="subvolume-root-debug"),
    # A plain folder cannot be receive's root (receive would take its subvolume, the shared one).
    pytest.param([], HOST + "/home", None, ["receive", "--chroot", HOST + "/home"], id="plain-folder"),
]


@pytest.mark.parametrize("flags, folder, tenant, expected", CASES)
def test_receive_args(flags, folder, tenant, expected):
    assert receive_args(flags, folder, tenant) == expected


def test_the_sudoers_pattern_still_matches():
    """The role's sudoers entry allows `btrfs receive --chroot *`: -m must come after --chroot."""
    assert receive_args([], HOST + "/home", HOST)[:2] == ["receive", "--chroot"]
