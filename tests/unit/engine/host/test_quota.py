"""engine.host.quota: a host's usage from `btrfs qgroup show`, the room a receive may fill."""

import os

import pytest

from engine.host.quota import copy_capped, parse_qgroup_referenced, room_left


SHOW = """\
Qgroupid    Referenced    Exclusive   Path
--------    ----------    ---------   ----
0/5              16384        16384   <toplevel>
0/259            16384        16384   web1
0/260        104873984        16384   web1/data/20261130-101010
1/259        125878272    125878272   <0 member qgroups>
1/2590              10           10   <0 member qgroups>
"""


@pytest.mark.parametrize("qgroup, referenced", [
    ("1/259", 125878272), ("0/260", 104873984), ("1/2590", 10), ("1/25", None), ("2/259", None),
])
def test_a_hosts_usage_is_its_qgroups_referenced_size(qgroup, referenced):
    assert parse_qgroup_referenced(SHOW, qgroup) == referenced


@pytest.mark.parametrize("used, quota, room", [
    (0, 100, 100), (60, 100, 40), (99, 100, 1), (100, 100, None), (150, 100, None),
])
def test_the_room_a_receive_may_fill(used, quota, room):
    if room is None:
        with pytest.raises(ValueError, match="over quota: /srv/backups/web1 holds"):
            room_left(used, quota, "/srv/backups/web1")
    else:
        assert room_left(used, quota, "/srv/backups/web1") == room


@pytest.mark.parametrize("length, limit, stopped", [(0, 10, False), (3000, 3000, False),
                                                    (3000, 2999, True), (5 << 20, 6 << 20, False)])
def test_a_capped_copy_stops_before_passing_its_limit(tmp_path, length, limit, stopped):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.write_bytes(os.urandom(length))
    with open(src, "rb") as i, open(dst, "wb") as o:
        copied, was_stopped = copy_capped(i.fileno(), o.fileno(), limit)
    assert was_stopped == stopped and copied <= limit
    if not stopped:
        assert dst.read_bytes() == src.read_bytes() and copied == length
