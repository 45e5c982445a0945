"""engine.model.setting_checks: the engine's own parsers refuse a value with the setting and the value named."""

import pytest

from engine.model.setting_checks import setting_problem

CASES = [
    # setting, value, the problem (None: the engine takes it)
    ("limit_rate", "20M", None),
    ("limit_rate", "1.5GiB", None),
    ("limit_rate", "", None),
    ("limit_rate", "fast", "limit_rate 'fast' is not a size (btrfs-backup: limit_rate must be a positive size"),
    ("buffer", "0", "buffer '0' is not a size"),
    ("max_age", "1d 12h", None),
    ("max_age", "90min", None),
    ("max_age", "3mo", "max_age '3mo' is not a duration (btrfs-backup: '3mo' is not a duration: months and years"),
    ("max_age", "", "max_age '' is not a duration"),
    ("max_age", "36 hours", "max_age '36 hours' is not a duration (btrfs-backup: '36 hours' is not a duration"),
    ("preserve_backups", "24h 7d 4w 12m *y", None),
    ("preserve_backups", "7d 7d", "preserve_backups '7d 7d' is not a retention policy (btrfs-backup: retention unit 'd' given twice"),
    ("min_age", "", None),
    ("min_age", "36h", None),
    ("min_age", "90m", "min_age '90m' is not a minimum age"),
    ("quota", "50G", None),
    ("quota", "1.5G", None),
    ("quota", "50 GB", None),
    ("quota", "50 PB", "quota '50 PB' is not a quota (btrfs-backup: quota must be a positive size"),
    ("clock_skew", "15m", None),
    ("clock_skew", "0", None),
    ("clock_skew", "", "clock_skew '' is not a clock skew"),
    ("clock_skew", "a while", "clock_skew 'a while' is not a clock skew"),
    ("compress", "zstd:19", None),
    ("compress", "zstd:20", "compress 'zstd:20' is not a compression setting"),
    ("schedule", "whenever", None),  # systemd's to check, not the engine's
    ("hook_timeout", "30s", None),
    ("hook_timeout", "0", "hook_timeout '0' is not a duration"),
    ("before_snapshot", "psql -c 'CHECKPOINT'", None),
    ("before_snapshot", ["sync", "psql -c 'CHECKPOINT"], "before_snapshot 'psql -c 'CHECKPOINT' is not a command line"),
    ("after_run", "", "after_run '' is not a command line (btrfs-backup: after_run command '' is empty)"),
    ("ping_url", "", None),
    ("ping_url", "https://hc-ping.com/uuid", None),
    # A URL may hold a secret: the problem shows its scheme and host only.
    ("ping_url", "hcping.com/secret-uuid", "ping_url '(a URL)' is not an http(s) URL (btrfs-backup: ping_url (a URL)"),
    ("ntfy_url", "ftp://ntfy.lan/secret-topic", "ntfy_url 'ftp://ntfy.lan/…' is not an http(s) URL"),
]


@pytest.mark.parametrize("setting, value, problem", CASES)
def test_setting_problem(setting, value, problem):
    found = setting_problem(setting, value)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem), found
        assert "secret" not in found


def test_the_name_shown_may_be_the_role_variable():
    assert setting_problem("quota", "lots", "btrfs_backup_server_quota").startswith("btrfs_backup_server_quota 'lots' is not a quota")
