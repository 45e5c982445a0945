"""Test-bed helpers for running tests against real btrfs loop filesystems and a private sshd."""
