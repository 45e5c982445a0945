"""engine.model.stream_options: a job's stream settings, each checked when the job is read (rule 7)."""

import pytest

from engine.model.errors import ConfigError
from engine.model.stream_options import StreamOptions

M = 1 << 20

DEFAULTS = dict(compress_level=3, compress_explicit=False, limit_rate=None, buffer=None, send_protocol="auto",
                btrfs_debug=False, resumable="auto", chunk_size=16 * M)

ACCEPTED = [
    ({}, {}),
    ({"compress": "none"}, {"compress_level": None}),
    ({"compress": "zstd:9"}, {"compress_level": 9, "compress_explicit": True}),
    ({"limit_rate": "20M"}, {"limit_rate": 20 * M}),
    ({"limit_rate": ""}, {"limit_rate": None}),
    ({"buffer": "64M"}, {"buffer": 64 * M}),
    ({"send_protocol": 2}, {"send_protocol": "2"}),
    ({"send_protocol": "1"}, {"send_protocol": "1"}),
    ({"btrfs_debug": True}, {"btrfs_debug": True}),
    ({"resumable": "never"}, {"resumable": "never"}),
    ({"resumable_chunk_size": "64M"}, {"chunk_size": 64 * M}),
]


@pytest.mark.parametrize("given, changed", ACCEPTED)
def test_settings_are_read(given, changed):
    options = StreamOptions(**given)
    expected = dict(DEFAULTS, **changed)
    assert {name: getattr(options, name) for name in expected} == expected


REFUSED = [
    ({"compress": "gzip"}, "compress"),
    ({"limit_rate": "fast"}, "limit_rate"),
    ({"buffer": "-1M"}, "buffer"),
    ({"send_protocol": "3"}, "send_protocol must be auto, 1 or 2"),
    ({"resumable": "sometimes"}, "resumable"),
    ({"resumable_chunk_size": "lots"}, "resumable_chunk_size"),
]


@pytest.mark.parametrize("given, named", REFUSED)
def test_a_bad_setting_is_refused_by_name(given, named):
    with pytest.raises(ConfigError, match=named):
        StreamOptions(**given)
