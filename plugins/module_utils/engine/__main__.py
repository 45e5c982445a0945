"""`python3 -m engine`: the btrfs-backup command line."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
