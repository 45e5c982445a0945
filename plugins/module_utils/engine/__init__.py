"""btrfs.backup engine: incremental, atomic btrfs backups (stdlib only, Python >= 3.8)."""

__version__ = "1.0.0"
